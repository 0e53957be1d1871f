"""One SMTP attempt with the standard library's smtplib, returned as one plain record.

smtplib is what runs inside Locust (gevent makes its sockets cooperative). Each stage has
its own timeout, and the record says how far the attempt got, the reply code and enhanced
code, and an outcome decided by code and exception type, never by reply text.

Default timeouts suit drills (seconds, not minutes); RFC 5321 4.5.3.2 and Postfix 3.7:

| stage      | here  | RFC 5321 | Postfix                       |
|------------|-------|----------|-------------------------------|
| connect    | 3 s   | -        | smtp_connect_timeout 30 s     |
| greeting   | 5 s   | 5 min    | smtp_helo_timeout 300 s       |
| command    | 5 s   | 5 min    | smtp_mail/rcpt_timeout 300 s  |
| data       | 10 s  | 2-3 min  | smtp_data_xfer_timeout 180 s  |
| final dot  | 10 s  | 10 min   | smtp_data_done_timeout 600 s  |
"""

from __future__ import annotations

import _socket
import functools
import ipaddress
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loadtest.addresses import AddressPolicy
from loadtest.dns_route import HostResolver, Resolution, Verdict
from loadtest.outcomes import Outcome, Phase, outcome_of_code
from maildrill.records import AttemptRecord

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_ENHANCED = re.compile(rb"^([245]\.\d{1,3}\.\d{1,3})\b")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_DOT_AFTER_LF = re.compile(rb"\n\.")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.0
    greeting: float = 5.0
    command: float = 5.0
    data: float = 10.0
    dot: float = 10.0


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log or traceback
    helo_name: str = "maildrill.test"
    timeouts: Timeouts = field(default_factory=Timeouts)
    messages_per_connection: int = 100
    resolve: bool = False  # host is a name looked up through the run's DNS server
    # RFC 2920 when the server offers it, as Postfix's client does; off by default until a
    # drill's counts at a `down` onset are understood with it (see the README)
    pipelining: bool = False
    mx_domain: str = ""  # made from this domain's MX set: followed while it holds the host


@dataclass
class Attempt:
    """One attempt as the sender fills it in, stage by stage; `as_record` is its row of
    the attempts journal (`maildrill.records.AttemptRecord`, the analysis' input)."""

    msg_id: str
    stream: str
    attempt: int
    server: str
    intended: float  # epoch seconds
    due: float
    start: float
    connected: float = 0.0  # session ready (after EHLO/STARTTLS/AUTH); start when reused
    end: float = 0.0
    phase: Phase = Phase.CONNECT
    code: int = 0
    enhanced: str = ""
    outcome: Outcome = Outcome.ACCEPTED
    bytes: int = 0
    recipients: int = 0
    recipients_refused: int = 0
    new_connection: bool = False
    maybe_duplicate: bool = False
    error: str = ""
    # The reply to each RCPT, in envelope order, as far as the attempt got: (code, enhanced
    # code of a refusal). The driver turns it into `rcpt_replies` (the message's recipients).
    replies: list[tuple[int, str]] = field(default_factory=list)
    rcpt_replies: str = ""
    # A server named by DNS: the address used and the answer it came from (dns_route).
    addr: str = ""
    dns_name: str = ""
    dns_ttl: int | None = None
    dns_at: float | None = None

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000.0

    def as_record(self, run_id: str, worker: str, failover: bool, final: bool) -> AttemptRecord:
        return AttemptRecord(
            run_id=run_id,
            worker=worker,
            msg_id=self.msg_id,
            stream=self.stream,
            attempt=self.attempt,
            server=self.server,
            intended=self.intended,
            due=self.due,
            start=self.start,
            connected=self.connected or None,
            end=self.end,
            phase=self.phase.value,
            code=self.code or None,
            enhanced=self.enhanced,
            outcome=self.outcome.value,
            bytes=self.bytes,
            recipients=self.recipients,
            recipients_refused=self.recipients_refused,
            new_connection=self.new_connection,
            retry=self.attempt > 1,
            failover=failover,
            final=final,
            maybe_duplicate=self.maybe_duplicate,
            error=self.error,
            rcpt_replies=self.rcpt_replies,
            addr=self.addr,
            dns_name=self.dns_name,
            dns_ttl=self.dns_ttl,
            dns_at=self.dns_at,
        )


@functools.cache
def _ip_family(host: str) -> socket.AddressFamily | None:
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """socket.create_connection, minus the name lookup when host is an IP address.

    Under gevent every getaddrinfo goes to a thread pool, whose thread waits for the GIL
    behind the busy event loop: milliseconds for each new session, on every reconnect.
    """
    family = _ip_family(host)
    if family is None:
        return socket.create_connection((host, port), timeout)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _SMTP(smtplib.SMTP):
    """smtplib with a connect timeout apart from the greeting timeout."""

    def __init__(self, timeouts: Timeouts, **kwargs: Any) -> None:
        self._timeouts = timeouts
        self.tcp_connected = False
        super().__init__(timeout=timeouts.connect, **kwargs)

    def send(self, s: ReadableBuffer | str) -> None:
        """smtplib's send, minus gevent's sendall on the common path.

        gevent's sendall asks the kernel for the socket's buffer size (a getsockopt) on
        every call, one per SMTP command: a tenth of a sender's CPU at its ceiling. One
        send() takes a command or a message whole when the buffer has room; the rest, if
        any, goes through sendall within what is left of the timeout, so the write keeps
        the one time limit it had."""
        sock = self.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        data = memoryview(s.encode(self.command_encoding) if isinstance(s, str) else s)
        begun = time.monotonic()
        try:
            sent = sock.send(data)
            if sent < data.nbytes:
                timeout = sock.gettimeout()
                if timeout is not None:
                    sock.settimeout(max(1e-3, timeout - (time.monotonic() - begun)))
                try:
                    sock.sendall(data[sent:])
                finally:
                    sock.settimeout(timeout)
        except OSError as exc:
            self.close()
            raise smtplib.SMTPServerDisconnected("Server not connected") from exc

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = _connect(host, port, self._timeouts.connect)
        self.tcp_connected = True
        # starttls() passes _host as the TLS server name; connect() leaves it empty.
        self._host = host
        sock.settimeout(self._timeouts.greeting)
        return sock


def dot_stuff(data: bytes) -> bytes:
    """Double the dot that starts a line (RFC 5321 4.5.2), at the start or after any LF.

    The same bytes as re.sub(rb"(?m)^\\.", b"..", data), much faster: that regex tests
    every position of the message and cost more than the rest of a send. Most messages
    need nothing, and a search for the literal (memchr) says so in half a replace.
    """
    if not data.startswith(b".") and _DOT_AFTER_LF.search(data) is None:
        return data
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if data.startswith(b".") else stuffed


def quote_address(address: str) -> str:
    """The <path> of MAIL FROM and RCPT TO, exactly as smtplib.quoteaddr gives it.

    quoteaddr runs every address through the email package's RFC 5322 parser, about 7 us
    each, to wrap a plain user@domain in angle brackets; only other forms need it.
    """
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One client context per process, made on first STARTTLS: loading the default CA
    paths costs about 20 ms, which every Locust user paid at start."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def enhanced_code(text: bytes | str) -> str:
    """str: smtplib's own errors, e.g. 500 "Line too long." for an overlong reply line."""
    if isinstance(text, str):
        text = text.encode(errors="replace")
    match = _ENHANCED.match(text)
    return match.group(1).decode() if match else ""


def _peek(raw: _socket.socket) -> bool:
    """Whether a kept session is still open, by one non-blocking peek at its stream."""
    try:
        peeked = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False
    # b"" is EOF; stray bytes mean a 421 (or, under TLS, its record) waits: let it speak.
    return bool(peeked)


class Sender:
    """Sends messages to named servers, keeping one session per server for reuse.

    MAIL FROM and every RCPT TO are checked before a byte goes out: an address that is not
    plain, or not in a reserved domain or one of `allowed_domains`, raises AddressError.
    """

    def __init__(
        self,
        servers: dict[str, Server],
        allowed_domains: Iterable[str] = (),
        hosts: HostResolver | None = None,
    ) -> None:
        self.servers = servers
        # Server name -> its open session, messages sent on it, the address it went to.
        self.sessions: dict[str, tuple[_SMTP, int, str]] = {}
        self.policy = AddressPolicy(allowed_domains)
        self.hosts = hosts  # looks up the servers named by DNS (Server.resolve)

    def close(self) -> None:
        for name in list(self.sessions):
            self._discard(name, polite=True)

    def _discard(self, name: str, polite: bool = False) -> None:
        client, _, _ = self.sessions.pop(name, (None, 0, ""))
        if client is None:
            return
        try:
            if polite:
                client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        client.close()

    def _open(self, server: Server, record: Attempt, host: str) -> _SMTP:
        record.phase = Phase.CONNECT
        client = _SMTP(server.timeouts, local_hostname=server.helo_name)
        record.new_connection = True
        try:
            try:
                code, msg = client.connect(host, server.port)
            finally:
                if client.tcp_connected:
                    record.phase = Phase.GREETING
            if code != 220:
                raise smtplib.SMTPConnectError(code, msg)
            assert client.sock is not None
            client.sock.settimeout(server.timeouts.command)
            record.phase = Phase.EHLO
            code, msg = client.ehlo()
            if code != 250:
                raise smtplib.SMTPHeloError(code, msg)
            if server.starttls:
                record.phase = Phase.STARTTLS
                client.starttls(context=_tls_context())
                client.ehlo()
            if server.username is not None:
                record.phase = Phase.AUTH
                client.login(server.username, server.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def send(
        self,
        server_name: str,
        record: Attempt,
        sender: str,
        recipients: tuple[str, ...],
        data: bytes,
    ) -> Attempt:
        """Run one attempt, filling `record` in place; never raises for SMTP trouble.

        An envelope maildrill may not send raises AddressError before any connection.
        """
        self.policy.check_envelope(sender, recipients)
        server = self.servers[server_name]
        started = time.perf_counter()
        record.start = time.time()
        record.recipients = len(recipients)
        client: _SMTP | None = None
        host = server.host
        if server.resolve:
            host = self._looked_up(server, record)
            if not host:
                self._discard(server_name)
                record.end = record.start + (time.perf_counter() - started)
                return record
        try:
            client, used, addr = self.sessions.pop(server_name, (None, 0, ""))
            if client is not None and addr != host:
                # The name now points elsewhere: a session to the old address is not used,
                # as an MTA's connection cache is keyed by the address.
                client.close()
                client = None
            if client is not None and not self._alive(client):
                # The server closed the idle session (as after an outage); an MTA's
                # connection cache drops it and connects afresh, so do we.
                client.close()
                client = None
            if client is None:
                client, used = self._open(server, record, host), 0
            record.connected = record.start + (time.perf_counter() - started)
            self._transact(client, server, record, sender, recipients, data)
            used += 1
            if used < server.messages_per_connection and self._reusable(client, record):
                self.sessions[server_name] = (client, used, host)
                client = None
        except smtplib.SMTPResponseException as exc:
            record.code = exc.smtp_code
            record.enhanced = enhanced_code(exc.smtp_error)
            record.outcome = outcome_of_code(exc.smtp_code)
            record.error = type(exc).__name__
        except ConnectionRefusedError as exc:
            record.outcome = Outcome.REFUSED
            record.error = type(exc).__name__
        except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
            record.outcome = Outcome.TIMEOUT
            record.error = type(exc).__name__
        except (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError, EOFError) as exc:
            # smtplib turns a read timeout into SMTPServerDisconnected; the cause tells.
            timed_out = isinstance(exc.__context__, TimeoutError)
            record.outcome = Outcome.TIMEOUT if timed_out else Outcome.DROPPED
            record.error = type(exc.__context__ if timed_out else exc).__name__
        except OSError as exc:  # unreachable, no route: the server cannot be reached
            record.outcome = Outcome.REFUSED
            record.error = type(exc).__name__
        finally:
            if client is not None:
                client.close()
            record.end = record.start + (time.perf_counter() - started)
        if record.phase is Phase.DOT and record.outcome in (Outcome.TIMEOUT, Outcome.DROPPED):
            record.maybe_duplicate = True
        return record

    def _looked_up(self, server: Server, record: Attempt) -> str:
        """The address to connect to for a server named by DNS, the answer journaled; ""
        when the lookup decided the attempt (filled in as Postfix's DNS failures go)."""
        record.phase = Phase.DNS
        if self.hosts is None:
            found = Resolution(Verdict.TEMPORARY, server.host, detail="no DNS server")
        else:
            dropped = server.mx_domain and self.hosts.still_mx(server.mx_domain, server.host)
            found = dropped or self.hosts.resolve(server.host)
        record.dns_name, record.addr = found.name, found.addr
        record.dns_ttl, record.dns_at = found.ttl, found.at
        if found.verdict is Verdict.ADDRESS:
            return found.addr
        if found.verdict is Verdict.TEMPORARY:
            # Postfix: "Host or domain name not found ... try again": deferred, 4.4.3.
            record.outcome, record.enhanced = Outcome.DEFERRED, "4.4.3"
        elif found.verdict is Verdict.NO_HOST:
            # Postfix: "Host not found": this host fails, the next MX is tried; 5.4.4.
            record.outcome, record.enhanced = Outcome.REFUSED, "5.4.4"
        else:
            record.outcome = Outcome.REFUSED  # an address outside loopback: never sent to
        record.error = f"dns:{found.detail}"
        return ""

    def _transact(
        self,
        client: _SMTP,
        server: Server,
        record: Attempt,
        sender: str,
        recipients: tuple[str, ...],
        data: bytes,
    ) -> None:
        assert client.sock is not None
        client.sock.settimeout(server.timeouts.command)
        # MAIL and RCPT as smtplib's mail() and rcpt() send them, with the fast quoting.
        size = f" SIZE={len(data)}" if client.has_extn("size") else ""
        commands = [
            f"mail FROM:{quote_address(sender)}{size}",
            *(f"rcpt TO:{quote_address(rcpt)}" for rcpt in recipients),
            "data",
        ]
        pipelined = server.pipelining and client.has_extn("pipelining")
        if pipelined:
            # RFC 2920: the envelope and DATA in one write, then their replies in order; the
            # replies decide exactly as one command at a time does.
            client.send("".join(f"{command}\r\n" for command in commands))
        record.phase = Phase.MAIL
        code, msg = self._reply(client, commands[0], pipelined)
        if code != 250:
            self._refused(client, record, code, msg)
            if pipelined:  # the server answers the rest too (503s): read, or the session goes
                self._drain(client, len(recipients) + 1)
            return
        record.phase = Phase.RCPT
        accepted = 0
        first_refusal: tuple[int, bytes] | None = None
        first_deferral: tuple[int, bytes] | None = None
        closing: tuple[int, bytes] | None = None
        for command in commands[1:-1]:
            code, msg = self._reply(client, command, pipelined)
            if code in (250, 251):
                accepted += 1
                record.replies.append((code, ""))
                continue
            record.replies.append((code, enhanced_code(msg)))
            first_refusal = first_refusal or (code, msg)
            if 400 <= code < 500:
                first_deferral = first_deferral or (code, msg)
            if code == 421:
                closing = (code, msg)
                break
        record.recipients_refused = len(recipients) - accepted
        if closing is not None:
            # The server closes the channel mid-envelope: the transaction is over, whatever
            # recipients it took before (no DATA will come), and the attempt is its 421.
            self._refused(client, record, *closing)
        if accepted == 0:
            # Every recipient refused: the message waits for a retry if any of them may yet
            # take it (a 4xx); the 5xx ones are done (the driver leaves them out of it).
            refusal = first_deferral or first_refusal
            assert refusal is not None
            if pipelined:  # (a 421 ended the attempt above)
                self._no_recipients_data(client)
            self._refused(client, record, *refusal)
            return
        record.phase = Phase.DATA
        code, msg = self._reply(client, commands[-1], pipelined)
        if code != 354:
            self._refused(client, record, code, msg)
            return
        payload = dot_stuff(data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        client.sock.settimeout(server.timeouts.data)
        client.send(payload + b".\r\n")
        record.bytes = len(data)
        record.phase = Phase.DOT
        client.sock.settimeout(server.timeouts.dot)
        code, msg = client.getreply()
        record.code = code
        record.enhanced = enhanced_code(msg)
        record.outcome = outcome_of_code(code)
        if record.outcome is not Outcome.ACCEPTED and code == 421:
            raise smtplib.SMTPResponseException(code, msg)

    @staticmethod
    def _reply(client: _SMTP, command: str, pipelined: bool) -> tuple[int, bytes]:
        """The reply to `command`: sent already when pipelined, else sent now."""
        if not pipelined:
            client.send(f"{command}\r\n")
        return client.getreply()

    @staticmethod
    def _drain(client: _SMTP, replies: int) -> None:
        """Read the replies still owed to pipelined commands after a refusal decided the
        attempt; a session that cannot give them is closed (not reused), the attempt's
        record left as the refusal made it."""
        try:
            for _ in range(replies):
                client.getreply()
        except (OSError, smtplib.SMTPException):
            client.close()

    @staticmethod
    def _no_recipients_data(client: _SMTP) -> None:
        """The pipelined DATA's reply when no recipient was taken: a server that answers
        it 354 all the same (RFC 2920 3.1 asks for 503 or 554) is given an empty message,
        "." alone, as Postfix's smtp client does, and its reply read, so the session
        stays in step for the next message."""
        try:
            code, _ = client.getreply()
            if code == 354:
                client.send(b".\r\n")
                client.getreply()
        except (OSError, smtplib.SMTPException):
            client.close()

    @staticmethod
    def _alive(client: _SMTP) -> bool:
        """False when the server has closed (or reset) an idle session we kept.

        Asked before every reused message, so it costs one peek at the TCP stream, with
        MSG_DONTWAIT (the session's own blocking flag and timeout stay as they are). Under
        gevent (Locust) the session's socket keeps the kernel's socket beneath it, already
        non-blocking, and the peek goes there: one system call, TLS or not (what a TLS
        socket would refuse to peek at is the stream beneath it). A standard-library socket
        (a timeout makes its recv wait first, TLS refuses MSG_PEEK) is peeked at through a
        copy of its descriptor in the C module's socket (closing the copy leaves the session
        open): dup, peek, close, three times the cost."""
        sock = client.sock
        if sock is None:
            return False
        beneath = getattr(sock, "_sock", None)  # gevent's name for it
        if isinstance(beneath, _socket.socket) and beneath.gettimeout() == 0.0:
            return _peek(beneath)
        try:
            raw = _socket.socket(sock.family, socket.SOCK_STREAM, 0, os.dup(sock.fileno()))
        except OSError:
            return False
        try:
            return _peek(raw)
        finally:
            raw.close()

    @staticmethod
    def _reusable(client: _SMTP, record: Attempt) -> bool:
        """After a refusal the session is reset for the next message, if it still works."""
        if record.outcome is Outcome.ACCEPTED:
            return True
        try:
            return client.rset()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    @staticmethod
    def _refused(client: _SMTP, record: Attempt, code: int, msg: bytes) -> None:
        record.code = code
        record.enhanced = enhanced_code(msg)
        record.outcome = outcome_of_code(code)
        if code == 421:
            # The server is closing the channel (RFC 5321 3.8): do not reuse the session.
            raise smtplib.SMTPResponseException(code, msg)
