"""The scenario file: servers, routing, campaign, users, faults, SLOs; validated.

Errors name the file, the field and the problem. Hosts outside loopback are refused unless
the scenario says `allow_remote: true`.

Each section is a model of its own module (server_spec, routing_spec, campaign_spec,
fault_event), checked alone; scenario_checks checks the parts together. What is here: the
whole, the questions the rest of maildrill asks of it (which server is which, which
servers' mail maildrill sees land) and reading it from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError, model_validator

from loadtest.addresses import AddressError, header_text
from loadtest.campaign import StreamSpec
from loadtest.campaign_spec import CampaignSpec
from loadtest.client import Server, Timeouts
from loadtest.dns_servers import expand_mx, is_name, served
from loadtest.dns_spec import DnsSpec
from loadtest.fault_event import FaultEvent
from loadtest.limits import MAX_USERS, MAX_WORKERS
from loadtest.resolver_mx import Consent, read_mx_sets
from loadtest.resolver_spec import ResolverSpec
from loadtest.retry import RetryPolicy
from loadtest.routing import Policy
from loadtest.routing_spec import RoutingSpec
from loadtest.scenario_checks import CHECKS
from loadtest.server_spec import ServerSpec
from loadtest.strict_model import StrictModel
from maildrill.dns.resolver import Resolver
from maildrill.inputs import config_text, describe_errors, yaml_problem
from maildrill.numbers import MILLIS_LIMIT, at_most
from maildrill.paths import NAME_MAX, NAME_PATTERN


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is meant for the user as is."""


def _printable(text: str) -> str:
    """One line of text a terminal shows as text: no line break, escape or other control."""
    try:
        return header_text(text, "printed text")
    except AddressError as exc:
        raise ValueError(str(exc)) from None


class Scenario(StrictModel):
    name: str = Field(
        default="scenario",
        pattern=NAME_PATTERN,
        max_length=NAME_MAX,
        description="names the run and its directory: [A-Za-z0-9_.-], a letter or digit first",
    )
    description: Annotated[str, AfterValidator(_printable)] = Field(
        default="", description="one line for `maildrill scenarios`, printed as it is"
    )
    allow_remote: bool = Field(default=False, description="allow servers outside loopback")
    servers: list[ServerSpec] = Field(min_length=1, description="the servers under test")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="server choice, retries")
    campaign: CampaignSpec = Field(description="what is sent and when")
    users: Annotated[int, at_most(MAX_USERS, "users")] = Field(
        default=10, ge=1, description="concurrent SMTP connections"
    )
    workers: Annotated[int, at_most(MAX_WORKERS, "worker processes")] = Field(
        default=0, ge=0, description="Locust worker processes; 0: one process"
    )
    faults: list[FaultEvent] = Field(default_factory=list, description="the fault timeline")
    slo: list[str] = Field(default_factory=list, description='e.g. "failover_s <= 5"')
    strict_preflight: bool = Field(
        default=False,
        description="a pre-flight flag (maildrill check before the load) stops the run: exit 2",
    )
    probe_interval_ms: Annotated[int, MILLIS_LIMIT] = Field(
        default=500, ge=0, description="health probe (connect, EHLO, QUIT) per server; 0: none"
    )
    probe_timeout_ms: Annotated[int, MILLIS_LIMIT] = Field(
        default=1000, gt=0, description="a probe taking longer fails as a timeout"
    )
    dns: DnsSpec | None = Field(
        default=None, description="zones for the run's own DNS server (maildrill.dns)"
    )
    resolver: ResolverSpec | None = Field(
        default=None,
        description="HOST[:PORT] (or a mapping, below): the DNS resolver the senders ask for "
        "servers named by DNS instead of the run's DNS server; needs allow_remote",
    )

    @model_validator(mode="before")
    @classmethod
    def _mx_servers(cls, data: Any) -> Any:
        """Each `{mx: DOMAIN}` server made one per MX host (loadtest.dns_servers)."""
        return expand_mx(data)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """The parts agree with each other: each of CHECKS, in order (the first problem)."""
        for check in CHECKS:
            check(self)
        return self

    # -- what the load side builds from it --------------------------------------------

    def ordered_servers(self) -> list[str]:
        return self.routing.ordered_servers(self.servers)

    def policy(self, seed: str | None = None) -> Policy:
        """The routing policy; `seed` shuffles MX hosts of equal preference (one per process)."""
        return self.routing.build_policy(self.servers, seed)

    def retry_policy(self) -> RetryPolicy:
        return self.routing.retry.policy()

    def timeouts(self) -> Timeouts:
        return self.routing.timeouts.timeouts()

    def client_servers(self) -> dict[str, Server]:
        timeouts = self.timeouts()
        return {s.name: s.client_server(timeouts, self.dns_named(s)) for s in self.servers}

    def dns_named(self, server: ServerSpec) -> bool:
        """The server's host is a name the senders look up as they send (loadtest.dns_route):
        any name with a `resolver:`, else a name the run's DNS server answers for."""
        if not is_name(server.host):
            return False
        if self.resolver is not None:
            return True
        return self.dns is not None and served(server.host, self.dns.build(allow_remote=True))

    def senders_resolver(self, run_dns: tuple[str, int] | None) -> Resolver | None:
        """What the senders (and the checks that find a server as they do) ask for servers
        named by DNS: the named `resolver:`, else the run's DNS server (`run_dns`, when it
        runs); None: neither."""
        if self.resolver is not None:
            return self.resolver.resolver()
        return None if run_dns is None else Resolver(*run_dns)

    def streams(self) -> list[StreamSpec]:
        return self.campaign.stream_specs()

    # -- which server is which, and whose mail maildrill sees land -------------------

    def server(self, name: str) -> ServerSpec:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def _chain(self, name: str) -> list[ServerSpec]:
        """The server, then each upstream a proxy or backup MX forwards to by name."""
        chain: list[ServerSpec] = []
        known = {s.name: s for s in self.servers}
        while (server := known.get(name)) is not None and server not in chain:
            chain.append(server)
            if server.mode not in ("proxy", "backup-mx") or server.upstream_name is None:
                break
            name = server.upstream_name
        return chain

    def observed(self, name: str) -> bool:
        """Whether maildrill sees where this server's mail lands: sinks journal receipts,
        Postfix instances relay to sinks, a proxy or backup MX is as good as its upstream.
        A server it does not own is not: mail it accepted and no sink received is
        unverified, not lost."""
        chain = self._chain(name)
        return bool(chain) and (chain[-1].postfix is not None or chain[-1].mode == "sink")

    def witness(self, name: str) -> str | None:
        """For mail into a chain that ends at a server maildrill does not own: the proxy
        right in front of that server, whose journal sees its 250s (one per chain, or a
        message would count once per proxy)."""
        chain = self._chain(name)
        if not chain or self.observed(name):
            return None
        if chain[-1].mode == "proxy":  # its upstream is an address, not a server
            return chain[-1].name
        if len(chain) > 1 and chain[-2].mode == "proxy":
            return chain[-2].name
        return None


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a mapping at the top")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {describe_errors(exc)}") from None


def read_yaml(path: Path) -> Any:
    """A scenario file's raw data; a file that cannot be read says so in one line."""
    try:
        return yaml.safe_load(config_text(path))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ScenarioError(f"{path}: not valid YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise ScenarioError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None


def load_scenario(path: Path, overrides: dict[str, tuple[str, int]] | None = None) -> Scenario:
    """Read and validate a scenario; `overrides` maps server names to (host, port). With a
    `resolver:`, its `mx:` entries' MX sets are asked of it (loadtest.resolver_mx)."""
    data = read_yaml(path)
    if overrides and isinstance(data, dict):
        for server in data.get("servers") or []:
            if isinstance(server, dict) and server.get("name") in overrides:
                server["host"], server["port"] = overrides[server["name"]]
    return parse_scenario(with_mx_sets(data, str(path)), str(path))


def with_mx_sets(data: Any, source: str, consent: Consent | None = None) -> Any:
    """The raw data with `mx:` entries read from its named resolver (loadtest.resolver_mx),
    for what reads a scenario file; its problem as a ScenarioError naming the source. The
    rest of the scenario is validated first, then `consent` asked: a scenario with other
    mistakes, or a run not confirmed, sends no query."""
    try:
        return read_mx_sets(data, Scenario.model_validate, consent)
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def parse_server_override(text: str) -> tuple[str, tuple[str, int]]:
    """'primary=127.0.0.1:2525' -> ('primary', ('127.0.0.1', 2525))."""
    name, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not port.isdigit() or not name:
        raise ScenarioError(f"--server {text!r}: expected NAME=HOST:PORT")
    return name, (host.strip("[]"), int(port))
