"""A scenario's `servers:` entries: where mail goes, and what maildrill runs there.

A server is one maildrill does not own (host and port only), a local sink (`local: true`,
its settings in `sink:`), or a real Postfix instance maildrill builds (`postfix:`). These
models check one server at a time; what servers must agree on with each other and with
the rest of the scenario is loadtest.scenario_checks.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

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

from loadtest.client import Server, Timeouts
from loadtest.postfix import setting_problem
from loadtest.strict_model import StrictModel
from maildrill.hostnames import ascii_domain, ascii_domain_keys, host_name_or_literal
from maildrill.inputs import describe_errors
from maildrill.netaddr import is_loopback
from maildrill.numbers import CheckedModel
from maildrill.paths import NAME_MAX, NAME_PATTERN
from sinks.config import SinkConfig, SinkMode, UpstreamConfig

_SELECTOR = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"


class DkimSpec(StrictModel):
    """OpenDKIM signs what the instance sends with a key made for the run (loadtest.opendkim)."""

    selector: str = Field(
        pattern=_SELECTOR, description="s= of the signature: the key is at SELECTOR._domainkey"
    )
    domain: str = Field(description="d= of the signature, whatever the From: domain")
    publish: Literal[True, False, "wrong"] = Field(
        default=True,
        description="true: the public key goes into the run's zone; false: left out; wrong: "
        "another key is published (drills a key that does not match)",
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return ascii_domain(value)

    @property
    def record_name(self) -> str:
        """Where a verifier looks the key up."""
        return f"{self.selector.lower()}._domainkey.{self.domain}"


MILTER_PARAMETERS = ("smtpd_milters", "non_smtpd_milters")


class PostfixSpec(StrictModel):
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
    source_address: str | None = Field(
        default=None,
        description="the IPv4 address it delivers from (smtp_bind_address), loopback unless "
        "allow_remote; default 127.0.0.11 for the first postfix server, .12 for the next, ...",
    )
    helo_name: str | None = Field(
        default=None,
        description="the name it gives in EHLO when it delivers (smtp_helo_name); default "
        "its hostname",
    )
    settings: dict[str, str | int] = Field(
        default_factory=dict,
        description="extra main.cf parameters (name: value); none that maildrill sets, "
        "none that relays, listens, binds, filters or looks up without allow_remote",
    )
    dkim: DkimSpec | None = Field(
        default=None,
        description="OpenDKIM signs its mail (d=domain, s=selector) with a key made per run; "
        "published in the run's zone unless publish says otherwise",
    )

    @field_validator("hostname", "helo_name")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return None if value is None else ascii_domain(value)

    @field_validator("source_address")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        """An address literal: the instances speak IPv4 only (inet_protocols)."""
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None

    @field_validator("routes")
    @classmethod
    def _route_domains(cls, routes: dict[str, str]) -> dict[str, str]:
        return ascii_domain_keys(routes)

    @field_validator("settings", mode="before")
    @classmethod
    def _booleans_as_postfix_writes_them(cls, settings: Any) -> Any:
        """YAML reads `yes` as true; main.cf wants `yes`, not the `1` an int would write."""
        if isinstance(settings, dict):
            return {
                k: ("yes" if v else "no") if isinstance(v, bool) else v for k, v in settings.items()
            }
        return settings

    @model_validator(mode="after")
    def _milters_for_dkim(self) -> PostfixSpec:
        """With dkim, the milters are maildrill's: OpenDKIM's, which a setting would hide."""
        if self.dkim is not None:
            for name in MILTER_PARAMETERS:
                if name in self.settings:
                    raise ValueError(f"settings: {name}: postfix.dkim sets the milters (OpenDKIM)")
        return self

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


RUN_DNS = "run"

# Until the run's DNS server listens, validation checks a sink that uses it with this
# address, as an upstream named by server gets a placeholder port (see _sink_config).
_DNS_PLACEHOLDER = ("127.0.0.1", 1)


class SinkVerifySpec(CheckedModel):
    """A local sink's `verify:` table (sinks.config.VerifyConfig), whose `dns` may be the
    run's own DNS server: its port is known only once it runs, so a scenario says `run` (or
    leaves `dns` out) and the drill, or `maildrill sinks`, writes the address in before the
    sink starts. The other keys go to the sink as written."""

    model_config = ConfigDict(extra="allow")

    dns: str = Field(
        default=RUN_DNS,
        description="run: the run's DNS server (needs the scenario's dns: section); or "
        "host:port of another",
    )

    @property
    def run_dns(self) -> bool:
        return self.dns == RUN_DNS


class SinkSpec(CheckedModel):
    """A local server's `sink:` table: its sink's settings (sinks.config.SinkConfig) but
    name, host and port, which are the server's.

    `mode`, `upstream` and `verify` are what the scenario reads itself (the faults a server
    takes, the chain its mail goes through, the DNS server its checks ask): an upstream may
    name another server of the scenario, verify's dns the run's own; the other keys go to
    the sink as written. The table is checked as a whole by the sink's
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

    verify: SinkVerifySpec | None = Field(
        default=None,
        description="check SPF, DKIM, DMARC and PTR of each message as a provider does "
        "(README, Authentication checks); dns: run by default",
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

    @property
    def run_dns(self) -> bool:
        """Its `verify:` looks names up in the run's DNS server (`dns: run` or no `dns`)."""
        return self.verify is not None and self.verify.run_dns


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
    dns: tuple[str, int] | None = None,
) -> SinkConfig:
    """A server's sink from its `sink:` table; `addresses` resolves an upstream named by
    server name, `dns` the run's DNS server for a `verify:` that uses it (until they run, a
    placeholder port keeps validation honest)."""
    settings = dict(table)
    upstream = settings.get("upstream")
    if isinstance(upstream, str):
        up_host, up_port = (addresses or {}).get(upstream, ("127.0.0.1", 1))
        settings["upstream"] = {"host": up_host, "port": up_port}
    verify = settings.get("verify")
    if isinstance(verify, dict) and verify.get("dns", RUN_DNS) == RUN_DNS:
        dns_host, dns_port = dns or _DNS_PLACEHOLDER
        settings["verify"] = {**verify, "dns": f"{dns_host}:{dns_port}"}
    return SinkConfig(name=name, host=host, port=port, **settings)


class ServerSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX, description="how reports name it")
    host: str = Field(
        default="127.0.0.1",
        description="loopback unless allow_remote; a name in the dns: zones is looked up "
        "through the run's DNS server as mail is sent (its addresses loopback unless "
        "allow_remote); with resolver:, any name is looked up there instead",
    )
    mx: str | None = Field(
        default=None,
        description="written without name: one server per MX host of this domain in the dns: "
        "zones, or as resolver: answers when the file is loaded (named and at the host, "
        "priority the MX preference); kept on each as made",
    )
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
    pipelining: bool = Field(
        default=Server.pipelining,
        description="RFC 2920 when the server offers PIPELINING, as Postfix's client does: "
        "MAIL, RCPT and DATA in one write (the harness needs less CPU a message); false: one "
        "command at a time",
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

    def sink_config(
        self,
        addresses: Mapping[str, tuple[str, int]] | None = None,
        dns: tuple[str, int] | None = None,
    ) -> SinkConfig:
        """This server's sink; `addresses` resolves an upstream named by server name, `dns`
        is the run's DNS server for a `verify:` that uses it (a placeholder until then:
        whoever starts the sink gives it, see `SinkSpec.run_dns`)."""
        table = self.sink.model_dump()
        return _sink_config(self.name, self.host, self.port, table, addresses, dns)

    def password(self) -> str | None:
        """Read from the environment or a file when needed, never kept in the scenario."""
        if self.password_env:
            return os.environ.get(self.password_env, "")
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip("\r\n")
        return None

    def client_server(self, timeouts: Timeouts, resolve: bool = False) -> Server:
        """The SMTP client's server; `resolve`: its host is a name the run's DNS server
        answers for, looked up as mail is sent (loadtest.dns_route)."""
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
            pipelining=self.pipelining,
            resolve=resolve,
            mx_domain=(self.mx or "") if resolve else "",
        )
