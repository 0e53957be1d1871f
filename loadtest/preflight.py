"""`maildrill check`: what each server offers, and the differences that break mail after a failover.

Three parts, kept apart:

- `probe` talks to one server with aiosmtplib (banner, EHLO, STARTTLS, certificate,
  optionally AUTH and a test transaction) and returns what it saw as plain data
  (`ServerFacts`); it never raises for a server's trouble, it records it.
- `compare` is a pure function from those facts (the first server is the reference, the
  primary) to `Flag`s, differences that would break mail after a failover, and notes,
  differences worth knowing that break nothing. Its tests need no sockets.
- `render_table` and `as_json` only read both.

The test transaction goes to a reserved address (`.invalid`) and carries the
`X-Maildrill-Run` and `X-Maildrill-Id` headers like every message maildrill sends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import aiosmtplib
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from loadtest.addresses import AddressPolicy
from loadtest.dns_servers import is_name
from loadtest.outcomes import Outcome, Phase
from loadtest.probing import ERRORS, classify
from loadtest.scenario import Scenario
from loadtest.side_by_side import Row, side_by_side
from maildrill.netaddr import is_loopback

EXPIRY_DAYS = 14.0
DEFAULT_TIMEOUT_S = 5.0
SENDER = "preflight@maildrill.test"
RECIPIENT = "preflight@maildrill.invalid"
# EHLO keywords shown side by side; the rest of what a server offers is kept in the facts.
FEATURES = ("8BITMIME", "SMTPUTF8", "PIPELINING", "CHUNKING")


# -- what a probe gathers (plain data, JSON as is) ----------------------------------------


@dataclass(frozen=True)
class Target:
    """A server to check, and what the sender is configured to do with it."""

    name: str
    host: str
    port: int
    helo_name: str = "maildrill.test"
    starttls: bool = False  # the sender uses STARTTLS with it
    username: str | None = None  # the sender logs in as this user
    password: str | None = field(default=None, repr=False)  # never in a log or traceback


@dataclass(frozen=True)
class Options:
    timeout_s: float = DEFAULT_TIMEOUT_S  # each step: connect, each command, the TLS handshake
    transaction: bool = False  # send one test message
    sender: str = SENDER
    recipient: str = RECIPIENT
    run_id: str = ""  # X-Maildrill-Run of the test message


@dataclass
class Certificate:
    subject: str  # RFC 4514
    issuer: str
    sans: list[str]  # "DNS:mx1.example.test", "IP:127.0.0.1"
    not_before: float  # epoch seconds
    not_after: float
    self_signed: bool  # issued by itself and signed by its own key
    sha256: str

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / 86400.0


@dataclass
class Tls:
    version: str  # TLSv1.3
    cipher: str
    bits: int
    certificate: Certificate | None


@dataclass
class Step:
    """A step that may fail without ending the check: the login, the test transaction."""

    ok: bool
    phase: str
    code: int
    reply: str  # the server's last reply, or the failure
    msg_id: str = ""


@dataclass
class ServerFacts:
    name: str
    host: str
    port: int
    checked_at: float = 0.0
    answered: bool = False  # a 220 banner came
    outcome: str = ""  # when not answered, or EHLO failed: refused, timeout, dropped, deferred…
    phase: str = Phase.CONNECT.value  # the last phase reached
    code: int = 0  # the reply code of the failure, if it was a reply
    error: str = ""
    banner: str = ""
    greeting_ms: float | None = None  # connect to the banner
    ehlo: dict[str, str] = field(default_factory=dict)  # keyword (upper case) -> parameters
    ehlo_tls: dict[str, str] | None = None  # EHLO again after STARTTLS
    tls: Tls | None = None
    tls_error: str = ""  # STARTTLS offered but it failed
    login: Step | None = None  # only when the sender has credentials
    transaction: Step | None = None  # only with --transaction

    # -- what the comparison reads ----------------------------------------------------

    @property
    def offered(self) -> dict[str, str]:
        """Everything offered before or after STARTTLS (AUTH is often offered after only)."""
        return {**self.ehlo, **(self.ehlo_tls or {})}

    @property
    def size(self) -> int | None:
        """The SIZE limit in bytes; 0 when SIZE is declared without one; None: no SIZE."""
        if "SIZE" not in self.offered:
            return None
        value = self.offered["SIZE"].split()
        return int(value[0]) if value and value[0].isdigit() else 0

    @property
    def starttls(self) -> bool:
        return "STARTTLS" in self.ehlo

    @property
    def auth(self) -> list[str]:
        mechanisms = set(self.ehlo.get("AUTH", "").upper().split())
        mechanisms |= set((self.ehlo_tls or {}).get("AUTH", "").upper().split())
        return sorted(mechanisms)

    def has(self, keyword: str) -> bool:
        return keyword in self.offered

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerFacts:
        data = dict(data)
        tls = data.pop("tls", None)
        if tls is not None:
            cert = tls.get("certificate")
            tls = Tls(**{**tls, "certificate": Certificate(**cert) if cert else None})
        login, transaction = (data.pop(k, None) for k in ("login", "transaction"))
        return cls(
            **data,
            tls=tls,
            login=Step(**login) if login else None,
            transaction=Step(**transaction) if transaction else None,
        )


# -- the probe (I/O) ----------------------------------------------------------------------


async def probe(target: Target, options: Options = Options()) -> ServerFacts:
    """Connect, EHLO, STARTTLS when offered, EHLO again, AUTH, a test message, QUIT."""
    facts = ServerFacts(target.name, target.host, target.port, checked_at=time.time())
    client = aiosmtplib.SMTP(
        hostname=target.host,
        port=target.port,
        local_hostname=target.helo_name,
        timeout=options.timeout_s,
        start_tls=False,
        validate_certs=False,  # to read any certificate; whether it is self-signed is a fact
    )
    phase = Phase.CONNECT
    try:
        started = time.perf_counter()
        greeting = await client.connect()
        facts.greeting_ms = round((time.perf_counter() - started) * 1000.0, 3)
        facts.answered, facts.banner = True, f"{greeting.code} {greeting.message}"
        phase = Phase.EHLO
        await client.ehlo()
        facts.ehlo = _extensions(client)
        if facts.starttls:
            await _starttls(client, facts, target)
        if target.username is not None and facts.auth and not facts.tls_error:
            facts.login = await _login(client, target)
        if options.transaction and not facts.tls_error:
            facts.transaction = await _transaction(client, target, options)
        facts.phase = Phase.EHLO.value
    except ERRORS as exc:
        failure = classify(exc, phase)
        facts.outcome, facts.phase = failure.outcome.value, failure.phase.value
        facts.code, facts.error = failure.code, failure.error
        if failure.phase is Phase.GREETING and failure.code:
            facts.banner = f"{failure.code} {getattr(exc, 'message', '')}".strip()
    finally:
        await _quit(client)
    return facts


def _extensions(client: aiosmtplib.SMTP) -> dict[str, str]:
    return {keyword.upper(): params for keyword, params in client.esmtp_extensions.items()}


async def _starttls(client: aiosmtplib.SMTP, facts: ServerFacts, target: Target) -> None:
    try:
        await client.starttls(server_hostname=target.host)
    except ERRORS as exc:
        facts.tls_error = classify(exc, Phase.STARTTLS).error
        return
    ssl_object = client.get_transport_info("ssl_object")
    cipher, version, bits = ssl_object.cipher() or ("", "", 0)
    der = ssl_object.getpeercert(binary_form=True)
    facts.tls = Tls(
        version=ssl_object.version() or version,
        cipher=cipher,
        bits=int(bits or 0),
        certificate=parse_certificate(der) if der else None,
    )
    await client.ehlo()  # RFC 3207: what was offered before TLS no longer counts
    facts.ehlo_tls = _extensions(client)


async def _login(client: aiosmtplib.SMTP, target: Target) -> Step:
    try:
        reply = await client.login(target.username or "", target.password or "")
    except ERRORS as exc:
        failure = classify(exc, Phase.AUTH)
        return Step(False, Phase.AUTH.value, failure.code, failure.error)
    return Step(True, Phase.AUTH.value, reply.code, reply.message)


async def _transaction(client: aiosmtplib.SMTP, target: Target, options: Options) -> Step:
    """One test message to a reserved address; any other raises AddressError, unsent."""
    AddressPolicy().check_envelope(options.sender, [options.recipient])
    run_id = options.run_id or time.strftime("preflight-%Y%m%d-%H%M%S")
    msg_id = f"{run_id}-{target.name}"
    message = (
        f"From: <{options.sender}>\r\nTo: <{options.recipient}>\r\n"
        f"Subject: maildrill pre-flight check of {target.name}\r\n"
        f"Date: {dt.datetime.now(dt.UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <{msg_id}@maildrill.test>\r\n"
        f"X-Maildrill-Run: {run_id}\r\nX-Maildrill-Id: {msg_id}\r\n"
        "X-Maildrill-Stream: preflight\r\n\r\n"
        "A maildrill pre-flight test message to a reserved address; it can be discarded.\r\n"
    )
    phase = Phase.MAIL
    try:
        await client.mail(options.sender)
        phase = Phase.RCPT
        await client.rcpt(options.recipient)
        phase = Phase.DATA
        reply = await client.data(message)
    except ERRORS as exc:
        failure = classify(exc, phase)
        return Step(False, phase.value, failure.code, failure.error, msg_id)
    return Step(True, Phase.DOT.value, reply.code, reply.message, msg_id)


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT when still connected; the transport closed whatever happened. A server that
    hung up after a refused login leaves a transport aiosmtplib no longer calls connected,
    and an unclosed one is a leaked socket (ResourceWarning at some later garbage
    collection)."""
    transport = client.transport
    try:
        if client.is_connected:
            await client.quit()
    except ERRORS:
        pass
    finally:
        client.close()
        if transport is not None:
            await _socket_closed(cast(asyncio.Transport, transport))


async def _socket_closed(transport: asyncio.Transport, grace_s: float = 1.0) -> None:
    """Wait until the transport's socket is really closed. `close()` only schedules it
    (after a TLS close_notify, a later loop turn), and `check` runs on `asyncio.run`, whose
    loop may close first: the socket then leaks as "unclosed transport" when collected.
    A peer that never finishes the TLS shutdown is cut off after `grace_s`."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while sock.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(0.005)
    if sock.fileno() != -1:
        transport.abort()
        await asyncio.sleep(0)  # abort schedules connection_lost; let it run


def parse_certificate(der: bytes) -> Certificate:
    """The facts of a DER certificate that matter to a sender."""
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [f"DNS:{n}" for n in names.value.get_values_for_type(x509.DNSName)]
        sans += [f"IP:{n}" for n in names.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature):
            self_signed = False
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        self_signed=self_signed,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


async def gather(targets: Sequence[Target], options: Options = Options()) -> list[ServerFacts]:
    """Every target at once; the facts in the targets' order."""
    return list(await asyncio.gather(*(probe(t, options) for t in targets)))


# -- the comparison (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Expectations:
    """What the sender is set up to do (from a scenario); empty for plain host:port targets."""

    starttls: frozenset[str] = frozenset()  # servers it uses STARTTLS with
    auth: frozenset[str] = frozenset()  # servers it logs in to
    max_message_size: int | None = None  # the largest message the campaign sends, bytes


@dataclass(frozen=True)
class Flag:
    """A difference that would break mail after a failover (or before one)."""

    code: str  # stable name, e.g. size-smaller
    server: str
    message: str  # one line, for people


@dataclass
class Comparison:
    reference: str
    flags: list[Flag]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.flags


def compare(
    facts: Sequence[ServerFacts],
    *,
    now: float,
    expiry_days: float = EXPIRY_DAYS,
    expect: Expectations = Expectations(),
) -> Comparison:
    """Flags and notes over gathered facts; `facts[0]` is the reference (the primary)."""
    if not facts:
        raise ValueError("no servers to compare")
    ref = facts[0]
    flags: list[Flag] = []
    notes: list[str] = []
    for server in facts:
        flags += _own_flags(server, now, expiry_days, expect)
    if not ref.answered:
        if len(facts) > 1:
            notes.append(f"{ref.name} (the reference) did not answer: nothing compared with it")
    else:
        for other in facts[1:]:
            if other.answered:
                found, said = _differences(ref, other)
                flags += found
                notes += said
    return Comparison(ref.name, flags, notes)


def _own_flags(s: ServerFacts, now: float, expiry_days: float, expect: Expectations) -> list[Flag]:
    """What is wrong with one server whatever the others are."""
    out: list[Flag] = []

    def flag(code: str, message: str) -> None:
        out.append(Flag(code, s.name, message))

    if not s.answered:
        why = {
            Outcome.REFUSED.value: "connection refused",
            Outcome.TIMEOUT.value: f"no answer ({s.phase} timed out)",
            Outcome.DROPPED.value: f"connection closed in {s.phase}",
        }.get(s.outcome, f"greets with {s.banner or s.outcome}")
        flag("unreachable", f"{s.name} does not answer: {why}")
        return out
    if s.outcome:  # it answered, then EHLO failed
        flag("ehlo-failed", f"{s.name}: EHLO failed ({s.error}): no mail can be sent")
    if s.tls_error:
        flag("tls-failed", f"{s.name} offers STARTTLS but the handshake fails: {s.tls_error}")
    cert = s.tls.certificate if s.tls else None
    if cert is not None:
        days = cert.days_left(now)
        expiry = dt.datetime.fromtimestamp(cert.not_after, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if days < 0:
            flag("cert-expired", f"{s.name}: certificate expired on {expiry}")
        elif days < expiry_days:
            flag(
                "cert-expiring",
                f"{s.name}: certificate expires in {days:.1f} days ({expiry}), "
                f"within {expiry_days:g}",
            )
    if s.name in expect.starttls and not s.starttls:
        flag("starttls-needed", f"{s.name} does not offer STARTTLS, which the sender uses")
    if s.name in expect.auth and not s.auth:
        flag("auth-needed", f"{s.name} offers no AUTH, and the sender logs in")
    if s.login is not None and not s.login.ok:
        flag("login-failed", f"{s.name} refuses the sender's login: {s.login.reply}")
    limit = s.size
    if expect.max_message_size and limit and limit < expect.max_message_size:
        flag(
            "size-below-campaign",
            f"{s.name}: SIZE {_bytes(limit)} is below the campaign's largest message "
            f"({_bytes(expect.max_message_size)}): those get 552",
        )
    t = s.transaction
    if t is not None and not t.ok:
        flag("transaction-failed", f"{s.name}: the test message failed in {t.phase}: {t.reply}")
    return out


def _differences(ref: ServerFacts, other: ServerFacts) -> tuple[list[Flag], list[str]]:
    """What `other` lacks that mail through `ref` relies on (flags), and lesser differences."""
    flags: list[Flag] = []
    notes: list[str] = []
    a, b = ref.name, other.name

    def flag(code: str, message: str) -> None:
        flags.append(Flag(code, b, message))

    size_a, size_b = ref.size, other.size
    if size_b:  # other declares a limit
        if size_a and size_b < size_a:
            flag("size-smaller", f"{b}: SIZE {_bytes(size_b)} is smaller than {a}'s "
                 f"{_bytes(size_a)}: messages in between get 552 after a failover")  # fmt: skip
        elif size_a == 0:
            flag("size-smaller", f"{b}: SIZE {_bytes(size_b)}, while {a} declares no limit: "
                 "larger messages get 552 after a failover")  # fmt: skip
        elif size_a is None:
            notes.append(f"{a} declares no SIZE; {b} takes at most {_bytes(size_b)}")
    elif size_a and size_b is None:
        notes.append(f"{b} declares no SIZE; {a} takes at most {_bytes(size_a)}")

    if ref.starttls != other.starttls:
        has, lacks = (a, b) if ref.starttls else (b, a)
        flag("starttls-mismatch", f"STARTTLS on {has} only, not on {lacks}: mail that "
             "requires TLS stops, or goes in clear text, when traffic moves")  # fmt: skip
    missing = sorted(set(ref.auth) - set(other.auth))
    if missing:
        flag("auth-missing", f"{b} lacks AUTH {' '.join(missing)}, which {a} offers: "
             "senders that log in with it fail after a failover")  # fmt: skip
    for keyword, breaks in (
        ("8BITMIME", "8-bit bodies must be converted or are refused"),
        ("SMTPUTF8", "internationalised addresses are refused (553/555)"),
    ):
        if ref.has(keyword) and not other.has(keyword):
            flag(f"{keyword.lower()}-missing", f"{b} lacks {keyword}, which {a} offers: {breaks}")
        elif other.has(keyword) and not ref.has(keyword):
            notes.append(f"{keyword} on {b} only")
    for keyword in ("PIPELINING", "CHUNKING"):
        if ref.has(keyword) != other.has(keyword):
            notes.append(f"{keyword} on {a if ref.has(keyword) else b} only (slower, not broken)")
    cert_a = ref.tls.certificate if ref.tls else None
    cert_b = other.tls.certificate if other.tls else None
    if cert_a and cert_b and cert_b.self_signed and not cert_a.self_signed:
        flag("cert-self-signed", f"{b}'s certificate is self-signed, {a}'s is not: senders "
             "that verify certificates (MTA-STS, DANE, strict TLS) refuse it")  # fmt: skip
    if ref.tls and other.tls and ref.tls.version != other.tls.version:
        notes.append(f"TLS version: {a} {ref.tls.version}, {b} {other.tls.version}")
    return flags, notes


def _bytes(n: int) -> str:
    return f"{n} ({n / 1048576:.1f} MiB)" if n >= 1048576 else f"{n} ({n / 1024:.0f} KiB)"


# -- output --------------------------------------------------------------------------------


def as_json(facts: Sequence[ServerFacts], result: Comparison) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "reference": result.reference,
        "flags": [asdict(f) for f in result.flags],
        "notes": result.notes,
        "servers": [asdict(f) for f in facts],
    }


def rows(facts: Sequence[ServerFacts], now: float) -> list[Row]:
    """(label, one cell per server, compared?) for the side-by-side table."""

    def cells(get: Any) -> list[str]:
        return [get(f) if f.answered else "-" for f in facts]

    def cert_cells(get: Any) -> list[str]:
        return [get(f.tls.certificate) if f.tls and f.tls.certificate else "-" for f in facts]

    def yes(value: bool) -> str:
        return "yes" if value else "no"

    def size(f: ServerFacts) -> str:
        return "not declared" if f.size is None else ("no limit" if f.size == 0 else _bytes(f.size))

    def expiry(c: Certificate) -> str:
        day = dt.datetime.fromtimestamp(c.not_after, dt.UTC).strftime("%Y-%m-%d")
        return f"{day} (in {c.days_left(now):.0f} d)"

    def answers(f: ServerFacts) -> str:
        if not f.answered:
            return f"NO: {f.outcome} in {f.phase}"
        return "yes" if f.greeting_ms is None else f"yes, {f.greeting_ms:.1f} ms"

    def step(s: Step | None) -> str:
        if s is None:
            return "-"
        return f"{s.code} {'ok' if s.ok else 'FAILED at ' + s.phase}".strip()

    return [
        ("address", [f"{f.host}:{f.port}" for f in facts], False),
        ("answers", [answers(f) for f in facts], False),
        ("banner", cells(lambda f: f.banner), False),
        ("SIZE", cells(size), True),
        ("STARTTLS", cells(lambda f: yes(f.starttls) + (" (FAILED)" if f.tls_error else "")), True),
        ("AUTH", cells(lambda f: " ".join(f.auth) or "none"), True),
        *[(k, cells(lambda f, k=k: yes(f.has(k))), True) for k in FEATURES],
        ("TLS", [f"{f.tls.version} {f.tls.cipher}" if f.tls else "-" for f in facts], True),
        ("certificate", cert_cells(lambda c: c.subject), False),
        ("SANs", cert_cells(lambda c: ", ".join(c.sans) or "none"), False),
        ("expires", cert_cells(expiry), False),
        ("self-signed", cert_cells(lambda c: yes(c.self_signed)), True),
        ("login", [step(f.login) for f in facts], True),
        ("test message", [step(f.transaction) for f in facts], True),
    ]


def render_table(facts: Sequence[ServerFacts], result: Comparison, now: float) -> str:
    """The side-by-side table; '*' marks a value that differs from the reference's."""
    names = [f"{f.name} (reference)" if i == 0 else f.name for i, f in enumerate(facts)]
    table = [r for r in rows(facts, now) if any(v != "-" for v in r[1])]
    lines = side_by_side(names, table)
    lines.append("")
    if result.flags:
        n = len(result.flags)
        lines.append(f"{n} problem{'s' if n > 1 else ''} that would break mail after a failover:")
        lines += [f"  ! {f.message}  [{f.code}]" for f in result.flags]
    else:
        lines.append("no differences that would break mail after a failover")
    if result.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


# -- targets ---------------------------------------------------------------------------------


class TargetError(ValueError):
    """A target that cannot be checked; the message is meant for the user as is."""


def parse_target(text: str) -> Target:
    """'[NAME=]HOST:PORT' on loopback ('[::1]:25' for IPv6); the name defaults to HOST:PORT."""
    name, sep, address = text.rpartition("=")
    host, colon, port = address.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{text!r}: expected HOST:PORT or NAME=HOST:PORT, e.g. 127.0.0.1:2525")
    if sep and not name:
        raise TargetError(f"{text!r}: empty name before '='")
    if not is_loopback(host):
        raise TargetError(
            f"{text!r}: {host} is outside loopback; to check remote servers, list them in a "
            "scenario with allow_remote: true and use --scenario"
        )
    return Target(name or address, host, int(port))


def targets_of(
    scenario: Scenario, addresses: Mapping[str, tuple[str, int]] | None = None
) -> list[Target]:
    """The scenario's servers, most preferred first (the reference), with real addresses
    (`addresses`: name -> (host, port) of sinks started for the run, and of servers named
    by DNS as looked up: `dns_route.locate`). A server named by DNS without an address
    there (or with its name there: `sink_fleet.preset_addresses` holds the name of every
    server maildrill does not start) is left out: its name is never handed to the system's
    resolver (`left_out_flags` says why it is not checked)."""
    servers = scenario.client_servers()
    order = [*scenario.ordered_servers(), *(s.name for s in scenario.servers)]
    targets = []
    for name in dict.fromkeys(order):
        s = servers[name]
        if s.resolve and is_name((addresses or {}).get(name, (s.host, 0))[0]):
            continue
        host, port = (addresses or {}).get(name, (s.host, s.port))
        if not port:
            raise TargetError(
                f"server {name!r} is a local sink with no port yet: `maildrill run` checks it "
                "after starting the sinks; or start them with `maildrill sinks` and pass "
                f"--server {name}=HOST:PORT"
            )
        targets.append(Target(name, host, port, s.helo_name, s.starttls, s.username, s.password))
    return targets


def expectations_of(scenario: Scenario) -> Expectations:
    return Expectations(
        starttls=frozenset(s.name for s in scenario.servers if s.starttls),
        auth=frozenset(s.name for s in scenario.servers if s.username is not None),
        max_message_size=max(s.size_max for s in scenario.campaign.streams),
    )


def left_out_flags(left_out: Mapping[str, str]) -> list[Flag]:
    """A flag for each server named by DNS that was not checked: server -> why (one line,
    naming the resolver asked; `dns_route.locate`)."""
    return [Flag("no-address", name, f"{why}: not checked") for name, why in left_out.items()]


def check(
    targets: Sequence[Target],
    options: Options = Options(),
    expect: Expectations = Expectations(),
    expiry_days: float = EXPIRY_DAYS,
    left_out: Mapping[str, str] | None = None,
) -> tuple[list[ServerFacts], Comparison]:
    """Probe every target, then compare (blocking; for callers without an event loop).
    `left_out`: servers not checked and why, each a flag (with no target left, the only
    ones)."""
    flags = left_out_flags(left_out or {})
    if not targets:
        return [], Comparison("", flags, [])
    facts = asyncio.run(gather(targets, options))
    result = compare(facts, now=time.time(), expiry_days=expiry_days, expect=expect)
    result.flags[:0] = flags
    return facts, result
