"""The scenario file: servers, routing, campaign, users, faults, SLOs; validated.

Errors name the file, the field and the problem. Hosts outside loopback are refused unless
the scenario says `allow_remote: true`.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from loadtest.addresses import AddressError, AddressPolicy, header_text, split_address
from loadtest.analysis import summary_model
from loadtest.campaign import DEFAULT_DOMAINS, StreamSpec
from loadtest.client import Server, Timeouts
from loadtest.limits import (
    MAX_ATTEMPTS,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGES,
    MAX_RATE,
    MAX_RECIPIENTS,
    MAX_USERS,
    MAX_WORKERS,
)
from loadtest.postfix import setting_problem
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, ByStream, Failover, Policy, Weighted
from loadtest.schedule import Schedule, Stage
from maildrill.hostnames import ascii_domain, host_name_or_literal
from maildrill.inputs import config_text, describe_errors, yaml_problem
from maildrill.netaddr import is_loopback
from maildrill.numbers import (
    MAX_DURATION_S,
    MILLIS_LIMIT,
    CheckedModel,
    Seconds,
    at_most,
    number_problem,
)
from maildrill.paths import NAME_MAX, NAME_PATTERN
from sinks.config import SinkConfig, SinkMode, UpstreamConfig, effect_request
from sinks.effects import build, kinds_for


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is meant for the user as is."""


class _Model(CheckedModel):
    """Unknown keys are errors; so are infinite, NaN and huge numbers (maildrill.numbers)."""

    model_config = ConfigDict(extra="forbid")


# Limits of one field, named in its error (README: Scenario limits; loadtest.limits).
Bytes = Annotated[int, at_most(MAX_MESSAGE_BYTES, "bytes", "64 MiB")]
Recipients = Annotated[int, at_most(MAX_RECIPIENTS, "recipients per message")]
Rate = Annotated[float, at_most(MAX_RATE, "msgs/s")]
Messages = Annotated[int, at_most(MAX_MESSAGES, "messages")]


class PostfixSpec(_Model):
    """maildrill builds, starts and stops a real Postfix instance for this server."""

    relay: str = Field(description="the local sink it relays everything to (a server name)")
    routes: dict[str, str] = Field(
        default_factory=dict,
        description="recipient domain: the local sink standing in for its provider "
        "(Postfix transport_maps); other domains go to relay",
    )
    hostname: str | None = Field(
        default=None, description="myhostname; default NAME.maildrill.test"
    )
    settings: dict[str, str | int] = Field(
        default_factory=dict,
        description="extra main.cf parameters (name: value); none that maildrill sets, "
        "none that relays, listens, binds, filters or looks up without allow_remote",
    )

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return None if value is None else ascii_domain(value)

    @field_validator("routes")
    @classmethod
    def _route_domains(cls, routes: dict[str, str]) -> dict[str, str]:
        return _ascii_keys(routes)

    @field_validator("settings", mode="before")
    @classmethod
    def _booleans_as_postfix_writes_them(cls, settings: Any) -> Any:
        """YAML reads `yes` as true; main.cf wants `yes`, not the `1` an int would write."""
        if isinstance(settings, dict):
            return {
                k: ("yes" if v else "no") if isinstance(v, bool) else v for k, v in settings.items()
            }
        return settings

    @field_validator("settings")
    @classmethod
    def _settings_syntax(cls, settings: dict[str, str | int]) -> dict[str, str | int]:
        """Names, one-line values and maildrill's own parameters; the routing ones are
        the scenario's to allow (allow_remote), checked there."""
        for name, value in settings.items():
            problem = setting_problem(name, str(value), allow_remote=True)
            if problem is not None:
                raise ValueError(problem)
        return settings


class SinkSpec(CheckedModel):
    """A local server's `sink:` table: its sink's settings (sinks.config.SinkConfig) but
    name, host and port, which are the server's.

    `mode` and `upstream` are what the scenario reads itself (the faults a server takes, the
    chain its mail goes through), and an upstream may name another server of the scenario;
    the other keys go to the sink as written. The table is checked as a whole by the sink's
    own model (see ServerSpec._sink_table_last).
    """

    model_config = ConfigDict(extra="allow")

    mode: SinkMode = Field(
        default="sink",
        description="backup-mx: queue what is accepted, forward it upstream; proxy: relay TCP "
        "to upstream, faults applied on the way",
    )
    upstream: str | UpstreamConfig | None = Field(
        default=None,
        description="backup-mx, proxy: another server's name, or {host, port, starttls, timeout_s}",
    )

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The keys written and no others, as in the file: a scenario dumped for Locust's
        workers reads back the same, and an empty table stays empty."""
        data: dict[str, Any] = handler(self)
        written = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in written}

    @property
    def upstream_server(self) -> str | None:
        """The upstream given as the name of another server of the scenario."""
        return self.upstream if isinstance(self.upstream, str) else None

    @property
    def upstream_address(self) -> UpstreamConfig | None:
        """The upstream given as an address (a server maildrill does not own, say)."""
        return self.upstream if isinstance(self.upstream, UpstreamConfig) else None


def _a_table(value: Any) -> Any:
    """`sink:` that is not a table, in pydantic's words for any table (no class names)."""
    if not isinstance(value, dict | SinkSpec):
        raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
    return value


def _sink_config(
    name: str,
    host: str,
    port: int,
    table: Mapping[str, Any],
    addresses: Mapping[str, tuple[str, int]] | None = None,
) -> SinkConfig:
    """A server's sink from its `sink:` table; `addresses` resolves an upstream named by
    server name (until the upstream runs, a placeholder port keeps validation honest)."""
    settings = dict(table)
    upstream = settings.get("upstream")
    if isinstance(upstream, str):
        up_host, up_port = (addresses or {}).get(upstream, ("127.0.0.1", 1))
        settings["upstream"] = {"host": up_host, "port": up_port}
    return SinkConfig(name=name, host=host, port=port, **settings)


class ServerSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX, description="how reports name it")
    host: str = Field(default="127.0.0.1", description="loopback unless allow_remote")
    port: int = Field(default=0, ge=0, le=65535, description="0 with local: a free port")
    priority: int = Field(default=10, description="lower is preferred, like MX preference")
    weight: int = Field(default=1, ge=1, description="share under the weighted policy")
    starttls: bool = Field(default=Server.starttls, description="STARTTLS after EHLO")
    username: str | None = Field(default=None, description="AUTH user")
    password_env: str | None = Field(default=None, description="AUTH password: this variable")
    password_file: Path | None = Field(default=None, description="AUTH password: this file")
    helo_name: Annotated[str, AfterValidator(host_name_or_literal)] = Field(
        default=Server.helo_name, description="name sent in EHLO (a host name or [address])"
    )
    messages_per_connection: int = Field(
        default=Server.messages_per_connection, ge=1, description="then reconnect"
    )
    local: bool = Field(default=False, description="maildrill starts a sink for it")
    sink: Annotated[SinkSpec, BeforeValidator(_a_table)] = Field(
        default_factory=SinkSpec,
        description="sink settings when local: any of a sink config but name, host and port",
    )
    postfix: PostfixSpec | None = Field(
        default=None, description="a real Postfix instance under test, built by maildrill"
    )

    @model_validator(mode="after")
    def _postfix_alone(self) -> ServerSpec:
        if self.postfix is not None:
            if self.local:
                raise ValueError("postfix and local: true exclude each other")
            if not is_loopback(self.host):
                raise ValueError("a postfix instance listens on loopback only")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _sink_table_last(cls, data: Any, handler: ModelWrapValidatorHandler[ServerSpec]) -> Any:
        """The `sink:` table is checked once the server's own fields are, and as a whole by
        the sink's model, so that its errors read `sink: ...` as a sink config's would."""
        table = data.get("sink", {}) if isinstance(data, dict) else None
        if not isinstance(table, dict):
            return handler(data)  # a server already made, or no table: pydantic says so
        server = handler({**data, "sink": {}})
        if table and not server.local:
            raise ValueError("sink settings need local: true")
        if server.local:
            for key in ("name", "host", "port"):
                if key in table:
                    raise ValueError(f"sink.{key}: set it on the server, not in sink")
            try:
                _sink_config(server.name, server.host, server.port, table)
            except ValidationError as exc:
                raise ValueError(f"sink: {describe_errors(exc)}") from None
        server.sink = SinkSpec.model_validate(table)
        return server

    @property
    def upstream_name(self) -> str | None:
        """A backup MX's or proxy's upstream given as the name of another server."""
        return self.sink.upstream_server

    @property
    def mode(self) -> str:
        """sink, backup-mx or proxy for a local server; "" for any other."""
        return self.sink.mode if self.local else ""

    def sink_config(self, addresses: Mapping[str, tuple[str, int]] | None = None) -> SinkConfig:
        """This server's sink; `addresses` resolves an upstream named by server name."""
        return _sink_config(self.name, self.host, self.port, self.sink.model_dump(), addresses)

    def password(self) -> str | None:
        """Read from the environment or a file when needed, never kept in the scenario."""
        if self.password_env:
            return os.environ.get(self.password_env, "")
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip("\r\n")
        return None

    def client_server(self, timeouts: Timeouts) -> Server:
        password = self.password()
        return Server(
            name=self.name,
            host=self.host,
            port=self.port,
            starttls=self.starttls,
            username=self.username,
            password=password,
            helo_name=self.helo_name,
            timeouts=timeouts,
            messages_per_connection=self.messages_per_connection,
        )


# The defaults of the routing sections are the runtime types' own (one place for each).
_BREAKERS, _RETRY, _TIMEOUTS = Breakers(), RetryPolicy(), Timeouts()


class CircuitSpec(_Model):
    threshold: int = Field(
        default=_BREAKERS.threshold, ge=1, description="consecutive server failures that open it"
    )
    cooldown_s: Seconds = Field(
        default=_BREAKERS.cooldown_s, gt=0, description="open this long, then one probe"
    )


class RetrySpec(_Model):
    """loadtest.retry.RetryPolicy's settings."""

    max_attempts: Annotated[int, at_most(MAX_ATTEMPTS, "attempts")] = Field(
        default=_RETRY.max_attempts, ge=1, description="per message, all servers"
    )
    backoff_s: Seconds = Field(default=_RETRY.backoff_s, ge=0, description="first wait after a 4xx")
    backoff_factor: float = Field(
        default=_RETRY.backoff_factor, ge=1, description="each wait this much longer"
    )
    max_backoff_s: Seconds = Field(default=_RETRY.max_backoff_s, ge=0, description="longest wait")
    retry_after_dot: bool = Field(
        default=_RETRY.retry_after_dot,
        description="retry timeouts/drops after the dot (may duplicate)",
    )
    defer_to_next: bool = Field(
        default=_RETRY.defer_to_next, description="retry a message 4xx on the next server"
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(**self.model_dump())


class TimeoutSpec(_Model):
    """loadtest.client.Timeouts, in seconds."""

    connect: Seconds = Field(default=_TIMEOUTS.connect, gt=0)
    greeting: Seconds = Field(default=_TIMEOUTS.greeting, gt=0)
    command: Seconds = Field(default=_TIMEOUTS.command, gt=0)
    data: Seconds = Field(default=_TIMEOUTS.data, gt=0)
    dot: Seconds = Field(default=_TIMEOUTS.dot, gt=0)

    def timeouts(self) -> Timeouts:
        return Timeouts(**self.model_dump())


class StreamRoute(_Model):
    policy: Literal["failover", "weighted"] = Field(
        default="failover", description="for this stream"
    )
    servers: list[str] = Field(min_length=1, description="in order of preference")


class RoutingSpec(_Model):
    policy: Literal["failover", "weighted", "by-stream"] = Field(
        default="failover", description="how a server is chosen"
    )
    servers: list[str] | None = Field(default=None, description="default: all, by priority")
    streams: dict[str, StreamRoute] = Field(default_factory=dict, description="by-stream routes")
    circuit: CircuitSpec = Field(default_factory=CircuitSpec, description="breaker per server")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="when messages are retried")
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec, description="per SMTP stage")


class StreamModel(_Model):
    name: str = Field(default="promotional", description="X-Maildrill-Stream; by-stream key")
    weight: float = Field(default=1.0, gt=0, description="share of the campaign")
    sender: str = Field(
        default="news@example.com",
        description="envelope and From: a plain address, reserved or allowed domain",
    )
    subject: str = Field(
        default="Spring sale: {index}", description="{index}, {stream} filled in; one line"
    )
    size_median: Bytes = Field(default=20_000, ge=200, description="bytes, whole message")
    size_sigma: float = Field(
        default=0.5, ge=0, le=10, description="lognormal shape; 0: all the median"
    )
    size_min: Bytes = Field(default=1_500, ge=200, description="bytes")
    size_max: Bytes = Field(default=500_000, ge=200, description="bytes")
    recipients_min: Recipients = Field(default=1, ge=1, description="per message")
    recipients_max: Recipients = Field(default=1, ge=1, description="per message")
    domains: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_DOMAINS),
        description="recipient domain weights (reserved domains unless allowed)",
    )
    attachment_share: float = Field(
        default=0.0, ge=0, le=1, description="share with a PDF attachment"
    )
    attachment_size: Bytes = Field(default=30_000, ge=0, description="bytes before base64")

    @field_validator("name", "subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return header_text(value, "a header value")

    @field_validator("sender")
    @classmethod
    def _plain_sender(cls, value: str) -> str:
        local, domain = split_address(value)
        return f"{local}@{domain}"

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, domains: dict[str, float]) -> dict[str, float]:
        return _ascii_keys(domains)

    @model_validator(mode="after")
    def _ranges(self) -> StreamModel:
        if self.size_min > self.size_max:
            raise ValueError("size_min is larger than size_max")
        if self.recipients_min > self.recipients_max:
            raise ValueError("recipients_min is larger than recipients_max")
        if not self.domains or any(w <= 0 for w in self.domains.values()):
            raise ValueError("domains needs at least one domain, each with a weight > 0")
        return self

    def spec(self) -> StreamSpec:
        return StreamSpec(**self.model_dump())


class StageSpec(_Model):
    """`rate` msgs/s (ramping to `to_rate` if given), or `messages` spread evenly."""

    duration_s: Seconds = Field(gt=0, description="seconds")
    rate: Rate | None = Field(default=None, ge=0, description="msgs/s at the stage start")
    to_rate: Rate | None = Field(default=None, ge=0, description="msgs/s at its end (a ramp)")
    messages: Messages | None = Field(
        default=None, ge=0, description="instead of rate: spread evenly"
    )

    @model_validator(mode="after")
    def _one_of(self) -> StageSpec:
        if (self.rate is None) == (self.messages is None):
            raise ValueError("give either rate (msgs/s) or messages, not both")
        if self.messages is not None and self.to_rate is not None:
            raise ValueError("to_rate goes with rate, not with messages")
        if self.messages is not None and self.messages > MAX_RATE * self.duration_s:
            raise ValueError(
                f"messages: {self.messages} in {self.duration_s:g} s is more than the limit "
                f"of {MAX_RATE} msgs/s"
            )
        return self

    def stage(self) -> Stage:
        if self.messages is not None:
            return Stage(self.duration_s, self.messages / self.duration_s)
        assert self.rate is not None
        return Stage(self.duration_s, self.rate, self.to_rate)


class CampaignSpec(_Model):
    seed: int = Field(default=1, description="same seed, same messages")
    streams: list[StreamModel] = Field(
        default_factory=lambda: [StreamModel()], min_length=1, description="message streams"
    )
    schedule: list[StageSpec] = Field(min_length=1, description="stages laid end to end")
    drain_s: Seconds = Field(
        default=10.0,
        ge=0,
        description="after the schedule, for retries; then as long for MTAs and backup MXs "
        "to hand on what they queued (what is left is stranded)",
    )
    allowed_recipient_domains: list[str] = Field(
        default_factory=list, description="real domains you may send to (and send from)"
    )

    @field_validator("allowed_recipient_domains")
    @classmethod
    def _domain_names(cls, domains: list[str]) -> list[str]:
        """Domain names, kept in the ASCII form they are sent in."""
        return [ascii_domain(d) for d in domains]

    @model_validator(mode="after")
    def _runnable(self) -> CampaignSpec:
        """The whole campaign within the time and message limits (each stage alone is)."""
        schedule = self.build_schedule()
        length = schedule.duration_s + self.drain_s
        if length > MAX_DURATION_S:
            raise ValueError(
                f"schedule and drain_s last {length:g} s, more than the limit of "
                f"{MAX_DURATION_S} s (7 days)"
            )
        if schedule.total > MAX_MESSAGES:
            raise ValueError(
                f"schedule: {schedule.total} messages planned, more than the limit of "
                f"{MAX_MESSAGES}"
            )
        return self

    def build_schedule(self) -> Schedule:
        return Schedule([s.stage() for s in self.schedule])


class FaultEvent(CheckedModel):
    """A fault on a server at `at` seconds for `duration` seconds, with its own parameters."""

    model_config = ConfigDict(extra="allow")

    at: Seconds = Field(ge=0, description="seconds after the campaign start")
    target: str = Field(description="a local server")
    kind: str = Field(description="a fault or behaviour kind, below; its parameters go alongside")
    duration: Seconds | None = Field(default=None, gt=0, description="seconds; none: to the end")
    probability: float = Field(
        default=1.0, gt=0, le=1, description="share of decisions it applies to"
    )

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def body(self) -> dict[str, Any]:
        """What `maildrill run` posts to the target sink's control API to start it."""
        body = {"kind": self.kind, "probability": self.probability, **self.params}
        if self.duration is not None:
            body["duration"] = self.duration
        return body


_SLO = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|>=|==|<|>)\s*(-?[0-9.]+)\s*$")

# What an SLO may name: the summary model says where each value is (one list).
SLO_METRICS = frozenset(summary_model.SLO_METRICS)
# Faults that decide whether the listener answers at all: two at once contradict.
EXCLUSIVE_KINDS = frozenset({"down", "hang", "busy", "flap", "mta-stop", "mta-abort"})
# Faults of a Postfix instance under test, carried out by maildrill with `postfix -c DIR`.
MTA_KINDS = frozenset({"mta-stop", "mta-abort"})


def parse_slo(rule: str) -> tuple[str, str, float]:
    match = _SLO.match(rule)
    if match is None:
        raise ValueError(f"{rule!r} is not 'metric <op> number'")
    metric, op, value = match.groups()
    if metric not in SLO_METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(SLO_METRICS))}")
    limit = float(value)
    problem = number_problem(limit)
    if problem:
        raise ValueError(f"{rule!r}: the limit {problem}")
    return metric, op, limit


def _printable(text: str) -> str:
    """One line of text a terminal shows as text: no line break, escape or other control."""
    try:
        return header_text(text, "printed text")
    except AddressError as exc:
        raise ValueError(str(exc)) from None


class Scenario(_Model):
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

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """The parts agree with each other: each of CHECKS, in order (the first problem)."""
        for check in CHECKS:
            check(self)
        return self

    # -- what the load side builds from it --------------------------------------------

    def ordered_servers(self) -> list[str]:
        return self.routing.servers or [
            s.name for s in sorted(self.servers, key=lambda s: s.priority)
        ]

    def policy(self) -> Policy:
        r = self.routing
        breakers = Breakers(r.circuit.threshold, r.circuit.cooldown_s)
        weights = {s.name: s.weight for s in self.servers}

        def make(kind: str, servers: list[str]) -> Policy:
            if kind == "weighted":
                return Weighted({n: weights[n] for n in servers}, breakers)
            ordered = sorted(servers, key=lambda n: self.server(n).priority)
            return Failover(ordered if r.servers is None else servers, breakers)

        if r.policy == "by-stream":
            return ByStream({k: make(v.policy, v.servers) for k, v in r.streams.items()}, breakers)
        return make(r.policy, self.ordered_servers())

    def retry_policy(self) -> RetryPolicy:
        return self.routing.retry.policy()

    def timeouts(self) -> Timeouts:
        return self.routing.timeouts.timeouts()

    def server(self, name: str) -> ServerSpec:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def client_servers(self) -> dict[str, Server]:
        timeouts = self.timeouts()
        return {s.name: s.client_server(timeouts) for s in self.servers}

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

    def streams(self) -> list[StreamSpec]:
        return [s.spec() for s in self.campaign.streams]


# -- what a valid scenario holds to, across its parts ------------------------------------
# Each check raises ValueError with the field and the problem; Scenario runs them in order.


def _server_names_unique(scenario: Scenario) -> None:
    names = [s.name for s in scenario.servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"servers: names must be unique; repeated: {', '.join(dupes)}")


def _routes_name_servers(scenario: Scenario) -> None:
    """Every server a route names is one of the scenario's; by-stream has its routes."""
    known = {s.name for s in scenario.servers}
    routing = scenario.routing
    routed = list(routing.servers or [])
    for route in routing.streams.values():
        routed += route.servers
    for name in routed:
        if name not in known:
            raise ValueError(f"routing: unknown server {name!r}; servers are {sorted(known)}")
    if routing.policy == "by-stream" and not routing.streams:
        raise ValueError("routing: by-stream needs streams")


def _faults_runnable(scenario: Scenario) -> None:
    """A fault that validates is one its target takes, inside the run: the sink's own
    check of its control API request runs here, before any load starts."""
    known = {s.name for s in scenario.servers}
    for i, fault in enumerate(scenario.faults):
        _check_fault(scenario, i, fault, known)


def _check_fault(scenario: Scenario, i: int, fault: FaultEvent, known: set[str]) -> None:
    if fault.target not in known:
        raise ValueError(f"faults[{i}].target: unknown server {fault.target!r}")
    schedule_s = scenario.campaign.build_schedule().duration_s
    if fault.at >= schedule_s:
        raise ValueError(
            f"faults[{i}].at: {fault.at:g} s is not before the end of the schedule "
            f"({schedule_s:g} s): the run may end before the fault starts"
        )
    if fault.at + (fault.duration or 0) > MAX_DURATION_S:
        raise ValueError(
            f"faults[{i}]: at + duration is {fault.at + (fault.duration or 0):g} s, more "
            f"than the limit of {MAX_DURATION_S} s (7 days)"
        )
    target = scenario.server(fault.target)
    if target.postfix is not None:
        if fault.kind not in MTA_KINDS:
            raise ValueError(
                f"faults[{i}].kind: {fault.target!r} is a Postfix instance; its faults "
                f"are {', '.join(sorted(MTA_KINDS))} (or put a proxy in front of it)"
            )
        if fault.params:
            raise ValueError(
                f"faults[{i}] ({fault.kind}): takes no parameters; got "
                f"{', '.join(sorted(fault.params))}"
            )
        return
    if fault.kind in MTA_KINDS:
        raise ValueError(f"faults[{i}].kind: {fault.kind} needs a postfix server")
    kinds = kinds_for(target.sink.mode)  # a proxy (sink mode: proxy) has kinds of its own
    if fault.kind not in kinds:
        known_kinds = ", ".join(sorted(kinds))
        raise ValueError(f"faults[{i}].kind: unknown {fault.kind!r}; known: {known_kinds}")
    try:
        build(fault.kind, fault.params, kinds)
        effect_request(fault.body(), kinds)  # the request as the sink will check it
    except ValidationError as exc:
        raise ValueError(f"faults[{i}] ({fault.kind}): {describe_errors(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"faults[{i}] ({fault.kind}): {exc}") from None
    if not target.local:
        raise ValueError(
            f"faults[{i}].target: {fault.target!r} is not a maildrill sink (local: true)"
        )


def _servers_name_servers(scenario: Scenario) -> None:
    """A Postfix instance relays and routes to local sinks; an upstream given by name is
    another server."""
    known = {s.name for s in scenario.servers}

    def local_sink(name: str) -> bool:
        return name in known and scenario.server(name).local

    for server in scenario.servers:
        if server.postfix is not None:
            relay = server.postfix.relay
            if not local_sink(relay):
                raise ValueError(
                    f"servers: {server.name!r}: postfix.relay {relay!r} is not a local sink"
                )
            for domain, sink in server.postfix.routes.items():
                if not local_sink(sink):
                    raise ValueError(
                        f"servers: {server.name!r}: postfix.routes[{domain}] {sink!r} is "
                        "not a local sink"
                    )
        upstream = server.upstream_name
        if upstream is not None and (upstream not in known or upstream == server.name):
            raise ValueError(
                f"servers: {server.name!r}: sink.upstream {upstream!r} is not another server"
            )


def _no_contradictions(scenario: Scenario) -> None:
    """Two faults deciding whether the same listener answers cannot overlap."""
    campaign, faults = scenario.campaign, scenario.faults
    end = campaign.build_schedule().duration_s + campaign.drain_s
    windows: dict[str, list[tuple[float, float, int]]] = {}
    for i, f in enumerate(faults):
        if f.kind in EXCLUSIVE_KINDS:
            stop = f.at + f.duration if f.duration else max(end, f.at)
            windows.setdefault(f.target, []).append((f.at, stop, i))
    for spans in windows.values():
        spans.sort()
        for (_, a1, i), (b0, _, j) in itertools.pairwise(spans):
            if b0 < a1:
                raise ValueError(
                    f"faults[{j}] ({faults[j].kind} at {b0:g} s) overlaps faults[{i}] "
                    f"({faults[i].kind} until {a1:g} s) on {faults[i].target!r}"
                )


def _slos_parse(scenario: Scenario) -> None:
    for i, rule in enumerate(scenario.slo):
        try:
            parse_slo(rule)
        except ValueError as exc:
            raise ValueError(f"slo[{i}]: {exc}") from None


def _loopback_unless_allowed(scenario: Scenario) -> None:
    """Servers, and the upstreams of backup MXs and proxies, on loopback only unless
    allow_remote."""
    if scenario.allow_remote:
        return
    for s in scenario.servers:
        if not is_loopback(s.host):
            raise ValueError(
                f"servers: {s.name!r} is at {s.host}, outside loopback; "
                "set allow_remote: true to send mail there"
            )
        upstream = s.sink.upstream_address
        if upstream is not None and not is_loopback(upstream.host):
            raise ValueError(
                f"servers: {s.name!r}: sink.upstream {upstream.host} is outside loopback; "
                "set allow_remote: true to relay there"
            )


def _addresses_allowed(scenario: Scenario) -> None:
    """Recipient and sender domains reserved or allowed; Postfix settings that route,
    listen or look up only with allow_remote."""
    policy = AddressPolicy(scenario.campaign.allowed_recipient_domains)
    for i, stream in enumerate(scenario.campaign.streams):
        for domain in stream.domains:
            if not policy.domain_allowed(domain):
                raise ValueError(
                    f"campaign.streams[{i}].domains: {domain!r} is a real domain; "
                    "list it in campaign.allowed_recipient_domains to send there"
                )
        try:
            policy.check(stream.sender, "sender")
        except AddressError as exc:
            raise ValueError(
                f"campaign.streams[{i}].sender: {exc}; a bounce goes to the sender"
            ) from None
    if scenario.allow_remote:
        return
    for server in scenario.servers:
        settings = server.postfix.settings if server.postfix else {}
        for name, value in settings.items():
            problem = setting_problem(name, str(value), allow_remote=False, defined=settings)
            if problem is not None:
                raise ValueError(f"servers: {server.name!r}: postfix.settings: {problem}")


CHECKS: tuple[Callable[[Scenario], None], ...] = (
    _server_names_unique,
    _routes_name_servers,
    _faults_runnable,
    _servers_name_servers,
    _no_contradictions,
    _slos_parse,
    _loopback_unless_allowed,
    _addresses_allowed,
)


def _ascii_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """Domain keys in their ASCII form; two spellings of one domain are one too many."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = ascii_domain(key)
        if name in out:
            raise ValueError(f"{key!r} is {name!r} again")
        out[name] = value
    return out


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
    """Read and validate a scenario; `overrides` maps server names to (host, port)."""
    data = read_yaml(path)
    if overrides and isinstance(data, dict):
        for server in data.get("servers") or []:
            if isinstance(server, dict) and server.get("name") in overrides:
                server["host"], server["port"] = overrides[server["name"]]
    return parse_scenario(data, str(path))


def parse_server_override(text: str) -> tuple[str, tuple[str, int]]:
    """'primary=127.0.0.1:2525' -> ('primary', ('127.0.0.1', 2525))."""
    name, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not port.isdigit() or not name:
        raise ScenarioError(f"--server {text!r}: expected NAME=HOST:PORT")
    return name, (host.strip("[]"), int(port))
