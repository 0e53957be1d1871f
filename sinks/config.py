"""The sink configuration file, validated; errors name the file, the field and the problem."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from maildrill.hostnames import ascii_domain
from maildrill.inputs import config_text, describe_errors, yaml_problem
from maildrill.netaddr import is_loopback
from maildrill.numbers import CheckedModel, Seconds, number_problem
from maildrill.paths import NAME_MAX, NAME_PATTERN
from sinks.effects import EFFECTS, PROXY_EFFECTS, Effect, build


class ConfigError(ValueError):
    """A configuration that cannot run; the message is meant for the user as is."""


# What a sink is: a receiving MTA; a backup MX that queues and forwards to its upstream; or
# a TCP proxy in front of another server, with faults applied on the way (sinks.proxy).
SinkMode = Literal["sink", "backup-mx", "proxy"]


class _Model(CheckedModel):
    model_config = ConfigDict(extra="forbid")


class EffectSpec(CheckedModel):
    """`kind` plus that kind's own parameters, flat, as written in YAML."""

    model_config = ConfigDict(extra="allow")

    kind: str
    probability: float = Field(default=1.0, gt=0, le=1)
    _kinds: Mapping[str, type[Effect]] | None = PrivateAttr(default=None)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _valid_kind_and_params(self, info: ValidationInfo) -> EffectSpec:
        # A proxy's kinds are not a sink's: its config and control API say so by context,
        # and a spec checked so keeps them when the config holding it is validated.
        kinds = (info.context or {}).get("kinds") or self._kinds or EFFECTS
        self._kinds = kinds
        if self.kind not in kinds:
            raise ValueError(f"unknown kind {self.kind!r}; known: {', '.join(sorted(kinds))}")
        try:
            build(self.kind, self.params, kinds)
        except ValidationError as exc:
            raise ValueError(f"{self.kind}: {describe_errors(exc)}") from None
        return self

    def make(self) -> Effect:
        return build(self.kind, self.params)


class FaultSpec(EffectSpec):
    """An effect switched on at `at` seconds after the start time, for `duration` seconds."""

    at: Seconds = Field(ge=0)
    duration: Seconds | None = Field(default=None, gt=0)


class TlsConfig(_Model):
    """STARTTLS with this certificate and key; both omitted means a generated self-signed pair."""

    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key, or neither for a self-signed certificate")
        return self


class AuthConfig(_Model):
    """AUTH PLAIN/LOGIN against a table of users. Keep passwords out of files that travel:
    `credentials_env` (user -> environment variable) or `credentials_file` ('user:password'
    lines) are read when the sink starts; inline `credentials` suit throwaway tests."""

    mechanisms: list[Literal["PLAIN", "LOGIN"]] = Field(default=["PLAIN", "LOGIN"], min_length=1)
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)  # never in a log
    credentials_env: dict[str, str] = Field(default_factory=dict)
    credentials_file: Path | None = None
    required: bool = False
    require_tls: bool = False

    def table(self) -> dict[str, str]:
        """user -> password, from all three sources; a missing variable or file is an error."""
        table = dict(self.credentials)
        for user, variable in self.credentials_env.items():
            if variable not in os.environ:
                raise ConfigError(f"auth.credentials_env: {variable} is not set (for {user!r})")
            table[user] = os.environ[variable]
        if self.credentials_file is not None:
            try:
                lines = self.credentials_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"auth.credentials_file: cannot read {self.credentials_file}: {exc.strerror}"
                ) from None
            for number, line in enumerate(lines, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                user, sep, password = line.partition(":")
                if not sep or not user:
                    raise ConfigError(
                        f"auth.credentials_file: {self.credentials_file} line {number}: "
                        "expected user:password"
                    )
                table[user.strip()] = password.rstrip("\r\n")
        return table


class UpstreamConfig(_Model):
    """Where a backup MX forwards what it queued (the primary), or a proxy relays to."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    starttls: bool = Field(default=False, description="STARTTLS (certificate not verified)")
    timeout_s: Seconds = Field(
        default=10.0, gt=0, description="per forward attempt; a proxy's connect timeout"
    )


class VerifyConfig(_Model):
    """Check each message as a provider does (sinks.authcheck): SPF, DKIM, DMARC and reverse
    DNS, every lookup sent to the run's DNS server `dns` and nowhere else; with `enforce`,
    mail that fails gets that provider's reply (sinks.authcheck.enforce)."""

    dns: str = Field(description="host:port of the run's DNS server (loopback)")
    enforce: Literal["none", "gmail", "yahoo", "outlook"] = Field(
        default="none", description="answer failing mail as this provider does; none: journal only"
    )
    lookup_timeout_s: Seconds = Field(
        default=2.0, gt=0, le=30, description="one DNS query; past it the check is temperror"
    )
    deadline_s: Seconds = Field(
        default=10.0,
        gt=0,
        le=120,
        description="all checks of one message; past it every verdict is temperror",
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, description="messages checked at once (threads); more wait"
    )

    @field_validator("dns")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @property
    def server(self) -> tuple[str, int]:
        host, _, port = self.dns.rpartition(":")
        return host.strip("[]"), int(port)


class SinkConfig(_Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX)
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    control_port: int = Field(default=0, ge=0, le=65535)
    hostname: str | None = Field(default=None, description="name in the banner and EHLO reply")
    size_limit: int | None = Field(default=10 * 1024 * 1024, ge=0, description="SIZE; 0: none")
    eightbitmime: bool = True
    smtputf8: bool = True
    pipelining: bool = True
    starttls: TlsConfig | bool = False
    auth: AuthConfig | None = None
    idle_timeout_s: Seconds = Field(
        default=300.0,
        gt=0,
        description="time for each command line (and a message's DATA) to arrive, counted "
        "from the previous command; bytes trickled in do not extend it; then 421 4.4.2, close",
    )
    max_session_s: Seconds = Field(
        default=0,
        ge=0,
        description="total time a session may last, however busy; then 421 4.4.2 and close "
        "(like Exchange's ConnectionTimeout); 0: none, as drills keep sessions for a whole run",
    )
    max_command_line: int = Field(
        default=512,
        ge=512,
        le=65536,
        description="longest command line in octets (RFC 5321: 512; ESMTP parameters add to "
        "MAIL's); longer: 500 5.5.6, the line discarded as it arrives, never held whole",
    )
    max_recipients: int = Field(
        default=1000,
        ge=1,
        description="recipients per message (Postfix smtpd_recipient_limit); past it 452 4.5.3",
    )
    max_errors: int = Field(
        default=20,
        ge=1,
        description="protocol errors (replies 500-504, 555) a session may make without "
        "delivering a message (Postfix smtpd_hard_error_limit); then 421 4.7.0 and close",
    )
    max_connections_per_ip: int = Field(
        default=0,
        ge=0,
        description="concurrent sessions from one client address; past it 421 4.7.0 at the "
        "greeting, then close; 0: none (a drill's load comes from one address)",
    )
    processes: int = Field(default=1, ge=1, le=64)
    seed: int | None = None
    behaviours: list[EffectSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    mode: SinkMode = Field(
        default="sink",
        description="backup-mx: queue what is accepted, forward it upstream; "
        "proxy: relay TCP to upstream, faults applied on the way (sinks.proxy)",
    )
    upstream: UpstreamConfig | None = Field(
        default=None, description="backup-mx: the primary; proxy: the server behind it"
    )
    forward_concurrency: int = Field(default=4, ge=1, le=256, description="parallel forwards")
    forward_backoff_s: Seconds = Field(default=1.0, gt=0, description="first retry wait")
    forward_max_backoff_s: Seconds = Field(default=30.0, gt=0, description="longest retry wait")
    verify: VerifyConfig | None = Field(
        default=None, description="check SPF, DKIM, DMARC and PTR of each message"
    )
    durability: Literal["full", "process"] = Field(
        default="full",
        description="backup-mx: full: each message is fsynced into the queue before its 250 "
        "(survives a power loss, as a real MTA promises); process: written to the OS only "
        "(survives kill -9, not a power loss; faster)",
    )

    @model_validator(mode="before")
    @classmethod
    def _proxy_kinds(cls, data: Any) -> Any:
        """A proxy's behaviours and faults are validated as the proxy's kinds."""
        if not isinstance(data, dict) or data.get("mode") != "proxy":
            return data
        data = dict(data)
        for key, model in (("behaviours", EffectSpec), ("faults", FaultSpec)):
            items = data.get(key)
            if isinstance(items, list):
                data[key] = [_proxy_spec(model, x, f"{key}[{i}]") for i, x in enumerate(items)]
        return data

    @model_validator(mode="after")
    def _backup_needs_upstream(self) -> SinkConfig:
        if self.mode != "sink" and self.upstream is None:
            raise ValueError(f"mode {self.mode} needs an upstream (host and port)")
        if self.mode == "sink" and self.upstream is not None:
            raise ValueError("upstream is only for mode: backup-mx or proxy")
        if self.mode == "proxy" and self.verify is not None:
            raise ValueError("verify: a proxy relays bytes; set it on the server behind it")
        if self.mode != "backup-mx" and self.durability != "full":
            raise ValueError("durability is only for mode: backup-mx (the queue's promise)")
        if self.mode == "proxy":
            assert self.upstream is not None
            if self.processes != 1:
                raise ValueError("processes: a proxy runs in one process")
            if self.starttls is not False or self.auth is not None:
                which = "starttls" if self.starttls is not False else "auth"
                raise ValueError(f"{which}: a proxy passes the upstream's through; set it there")
            if self.upstream.starttls:
                raise ValueError(
                    "upstream.starttls: a proxy relays bytes; the client's STARTTLS goes through"
                )
        return self

    @field_validator("hostname")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        """It goes into the banner, the EHLO reply and a certificate: a host name only,
        never a line break that would add a reply of its own."""
        if value is None:
            return None
        name = ascii_domain(value)
        return value if value.isascii() else name

    @field_validator("starttls", mode="before")
    @classmethod
    def _tls_table_or_flag(cls, value: Any) -> Any:
        """A table is validated as TlsConfig alone, so its errors are not buried under
        those of the union's other member (and pydantic's names for them)."""
        if isinstance(value, dict):
            return TlsConfig.model_validate(value)
        if not isinstance(value, bool):
            raise ValueError("expected true, false or a table with cert and key")
        return value

    @property
    def banner_name(self) -> str:
        return self.hostname or f"{self.name}.maildrill.test"

    @property
    def tls(self) -> TlsConfig | None:
        if self.starttls is True:
            return TlsConfig()
        return self.starttls or None


class SinksFile(_Model):
    sinks: list[SinkConfig] = Field(min_length=1)
    seed: int = 0
    allow_remote: bool = False
    journal_dir: Path | None = None
    start_at: float | None = Field(default=None, description="epoch of schedule zero")

    @model_validator(mode="after")
    def _unique_and_local(self) -> SinksFile:
        names = [s.name for s in self.sinks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sink names must be unique; repeated: {', '.join(dupes)}")
        ports = [s.port for s in self.sinks if s.port] + [
            s.control_port for s in self.sinks if s.control_port
        ]
        clashes = sorted({p for p in ports if ports.count(p) > 1})
        if clashes:
            raise ValueError(f"ports used twice: {', '.join(map(str, clashes))}")
        if not self.allow_remote:
            for s in self.sinks:
                if not is_loopback(s.host):
                    raise ValueError(
                        f"sink {s.name!r}: host {s.host!r} is not loopback; "
                        "set allow_remote: true to listen elsewhere"
                    )
                if s.verify is not None and not is_loopback(s.verify.server[0]):
                    raise ValueError(
                        f"sink {s.name!r}: verify.dns {s.verify.dns!r} is not loopback; "
                        "set allow_remote: true to ask another DNS server"
                    )
                if s.upstream is not None and not is_loopback(s.upstream.host):
                    raise ValueError(
                        f"sink {s.name!r}: upstream {s.upstream.host!r} is not loopback; "
                        "set allow_remote: true to forward mail there"
                    )
        return self


_DURATION: TypeAdapter[float] = TypeAdapter(
    Annotated[Seconds, Field(gt=0)], config=ConfigDict(allow_inf_nan=False)
)


def effect_request(
    data: Mapping[str, Any], kinds: Mapping[str, type[Effect]]
) -> tuple[EffectSpec, float | None]:
    """A control API body (`kind`, `probability`, `duration` and the kind's parameters),
    held to the rules of a scheduled fault. A scenario checks each fault it will send with
    this same function, so a fault the sink would refuse never reaches a run.

    Raises ValidationError or ValueError (one line, naming the field)."""
    problem = number_problem(data)
    if problem:
        raise ValueError(problem)
    data = dict(data)
    duration = data.pop("duration", None)
    # JSON true is an int to Python; a string is not a number of seconds.
    if isinstance(duration, bool | str):
        raise ValueError("duration: must be a number of seconds > 0")
    if duration is not None:
        try:
            duration = _DURATION.validate_python(duration)
        except ValidationError as exc:
            raise ValueError(f"duration: {describe_errors(exc)}") from None
    return EffectSpec.model_validate(data, context={"kinds": kinds}), duration


def _proxy_spec(model: type[EffectSpec], item: Any, where: str) -> EffectSpec:
    if isinstance(item, BaseModel):
        item = item.model_dump()
    try:
        return model.model_validate(item, context={"kinds": PROXY_EFFECTS})
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_errors(exc)}") from None


def parse_config(data: Any, source: str = "<config>") -> SinksFile:
    try:
        return SinksFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_errors(exc)}") from None


def load_config(path: Path) -> SinksFile:
    try:
        text = config_text(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sinks' list at the top")
    return parse_config(data, str(path))
