"""aiosmtpd's SMTP state machine with a faster DATA path and hooks for socket-level faults.

Policy lives in the handler (`sinks.handler`); this class only adds what a handler cannot
do: act before the banner (hang, busy), ask the effects at every reply it sends (a freeze
holds them all, `Stage.REPLY`), read DATA in bulk instead of line by line, close after a
421, leave without a reply (drop), and journal every 4xx/5xx it sends. It also
holds a hostile client to the session limits of `SinkConfig` (idle and session clocks,
errors per session, connections per address, line length) and takes turns with the other
sessions when a client pipelines a flood.

What it needs of aiosmtpd beyond the public API comes from `sinks.aiosmtpd_compat`, by
names of ours; nothing here touches a private name of aiosmtpd or asyncio.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import logging
import math
import re
from base64 import b64decode, b64encode
from collections.abc import Collection, Mapping
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from sinks.aiosmtpd_compat import CompatSMTP, Missing, reader_limit
from sinks.authcheck.verdicts import AuthVerdicts
from sinks.config import SinkConfig
from sinks.effects import Action, Context, Decision, SessionInfo, Stage
from sinks.replies import (
    AUTH_LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    SESSION_TOO_LONG,
    TIMED_OUT,
    TOO_MANY_ERRORS,
    TOO_MANY_FROM_PEER,
    Reply,
)

_TERMINATOR = b"\r\n.\r\n"
# DATA is read in pieces that end at '.CRLF', or of this size in a long stretch without one.
_DATA_CHUNK = 64 * 1024
# Replies to syntax and sequence errors (RFC 5321 4.2.2), counted against max_errors.
_PROTOCOL_ERRORS = frozenset(("500", "501", "502", "503", "504", "555"))
# A session answers this many commands in a row, at most, before letting others run: a
# client that pipelines thousands of commands in one write must not stall the rest.
_FAIR_SHARE = 16

# aiosmtpd's own refusals, with the RFC 3463 enhanced codes real MTAs send, so that
# journals and reports can group every refusal by "code enhanced".
_ENHANCED = {
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "500 Command line too long": "500 5.5.6 Error: command line too long",
    "500 Error: strict ASCII mode": "500 5.6.7 Error: strict ASCII mode",
    "501 Syntax: EHLO hostname": "501 5.5.4 Syntax: EHLO hostname",
    "501 Syntax: HELO hostname": "501 5.5.4 Syntax: HELO hostname",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "503 Error: send HELO first": "503 5.5.1 Error: send HELO first",
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "552 Error: message size exceeds fixed maximum message size": (
        "552 5.3.4 Error: message size exceeds fixed maximum message size"
    ),
}
# The same for those whose text varies (a syntax hint, a command or argument echoed).
_ENHANCED_BY_PREFIX = (
    ("500 Error: command ", "5.5.1"),  # "X" not recognized
    ("501 Syntax: ", "5.5.4"),
    ("501 Error: ", "5.5.4"),  # BODY and SMTPUTF8 parameters
    ("501 Supported commands:", "5.5.4"),  # HELP for an unknown command
    ("501 Not enough value", "5.5.4"),
    ("501 Too many values", "5.5.4"),
    ("502 EXPN not implemented", "5.5.1"),
    ("502 Could not VRFY", "5.5.1"),
    ("503 Error: send ", "5.5.1"),  # HELO or EHLO first
    ("503 Already authenticated", "5.5.1"),
    ("555 MAIL FROM parameters", "5.5.4"),
    ("555 RCPT TO parameters", "5.5.4"),
    ("454 TLS not available", "4.7.0"),
    ("554 Command refused due to lack of security", "5.7.0"),
)


def _with_enhanced(text: str) -> str:
    """An aiosmtpd refusal with the enhanced code real MTAs send; other replies unchanged."""
    exact = _ENHANCED.get(text)
    if exact is not None:
        return exact
    for prefix, enhanced in _ENHANCED_BY_PREFIX:
        if text.startswith(prefix):
            return f"{text[:4]}{enhanced} {text[4:]}"
    return text


# A plain `<local@domain>` path (ASCII dot-atoms), then optional ESMTP parameters: what
# nearly every sender sends. aiosmtpd parses every MAIL and RCPT with the RFC 5322 header
# parser, which costs more than the rest of the command; anything this does not match
# (quoted local parts, domain literals, comments, source routes, `<>`) still goes there.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<((?:{_ATEXT}\.)*{_ATEXT})@((?:{_ATEXT}\.)*{_ATEXT})>[ \t]*([^ \t(].*)?\Z", re.DOTALL
)
# RFC 5321 paths and reply texts hold no control characters; aiosmtpd lets them through.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Bytes that are not UTF-8, as aiosmtpd decodes them (surrogateescape): no address has them,
# and a journal written in UTF-8 cannot hold them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class SessionOwner(Protocol):
    """What a connection asks of its sink (`sinks.sink.Sink`): limits, effects, bookkeeping.

    A protocol, so that this module does not import the sink that imports it.
    """

    @property
    def config(self) -> SinkConfig: ...
    @property
    def peers(self) -> Mapping[str, int]: ...  # open sessions per peer address
    @property
    def by_stage(self) -> Mapping[Stage, Collection[object]]: ...  # active effects

    async def decide(self, stage: Stage, ctx: Context) -> Decision | None: ...
    def context(self, server: SinkSMTP, address: str = "") -> Context: ...
    def next_session_id(self) -> str: ...
    def session_opened(self, proto: SinkSMTP) -> None: ...
    def session_closed(self, proto: SinkSMTP) -> None: ...
    def refused(self, server: SinkSMTP, reply: str) -> None: ...


class SinkSMTP(CompatSMTP):
    def __init__(
        self, sink: SessionOwner, handler: Any, *, like: SinkSMTP | None = None, **kwargs: Any
    ) -> None:
        """A protocol for one connection; `like`: a template of this sink to copy (see below)."""
        if like is None:
            # Lines up to the reader's limit are read whole, then measured against the
            # command's limit; longer ones are discarded as they arrive (aiosmtpd).
            self.command_size_limit = sink.config.max_command_line
            self.line_length_limit = max(SMTP.line_length_limit, self.command_size_limit + 64)
            # aiosmtpd warns when AUTH is required without TLS: set it after, unwarned.
            auth_required = kwargs.pop("auth_required", False)
            super().__init__(handler, **kwargs)
            self.require_auth(auth_required)
        else:
            # SMTP.__init__ was a third of the CPU of a one-message session: it is done
            # once per sink (the template) and copied (see CompatSMTP.copy_setup).
            self.copy_setup(like)
        # aiosmtpd keeps these limits in one dict on the class, shared by every connection
        # (each EHLO raises MAIL's limit for all of them); each connection gets its own.
        limit = self.command_size_limit
        self.command_size_limits = collections.defaultdict(lambda: limit)
        self.sink = sink
        self.info: SessionInfo | None = None
        self.stage = Stage.CONNECT
        self.msg_id = ""
        # The verdicts of the message in DATA when the sink's enforce: refuses it: the
        # refusal's journal row carries them (Sink.refused takes them, once).
        self.refused_for: AuthVerdicts | None = None
        # Recipients of the message in DATA: aiosmtpd resets the envelope before the reply
        # to the final dot, and the refusals journal counts that reply's recipients.
        self.data_rcpts = 0
        self.ended = False
        self._deadline = 0.0
        self._ends_at = math.inf  # max_session_s after the connection, if set
        self._hanging = False  # a hang effect: no 421 when the idle timer closes
        self._errors = 0  # protocol errors since the last message delivered
        self._replies = 0
        self._continued: list[bytes] = []

    # -- connection bookkeeping -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.info is None
        if first:
            peer = transport.get_extra_info("peername")
            peer_ip = peer[0] if isinstance(peer, tuple) else str(peer)
            self.info = SessionInfo(id=self.sink.next_session_id(), peer_ip=peer_ip)
            self.sink.session_opened(self)
            if self.sink.config.max_session_s:
                self._ends_at = self.loop.time() + self.sink.config.max_session_s
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.info is not None and not self.ended:
            self.ended = True
            self.sink.session_closed(self)
        super().connection_lost(error)

    async def serve_client(self) -> None:
        assert self.info is not None
        per_ip = self.sink.config.max_connections_per_ip
        if per_ip and self.sink.peers[self.info.peer_ip] > per_ip:
            await self.push(str(TOO_MANY_FROM_PEER).format(peer=self.info.peer_ip))
            return
        if self.sink.by_stage[Stage.CONNECT]:
            try:
                decision = await self.sink.decide(Stage.CONNECT, self.sink.context(self))
                if decision is Action.HANG:
                    await self._hang()  # until the client gives up or the idle timeout
            except asyncio.CancelledError:
                # The client left (eof_received cancels us). Close our side as aiosmtpd's
                # command loop does, or the session stays half-open and counted as active.
                self._close()
                raise
            if isinstance(decision, Reply):
                await self.push(str(decision))
                self._close()
                return
        await super().serve_client()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def reset_idle_timer(self, duration: float | None = None) -> None:
        """Move the idle deadline; the timer is only re-armed when it fires too early.

        aiosmtpd cancels its timer and schedules a new one for every command line. It
        moves the deadline only when a whole command has come, so a client trickling in
        a line a byte at a time, or saying nothing, is cut at the deadline all the same.
        """
        self._deadline = self.loop.time() + (duration or self.idle_timeout_s)
        when = min(self._deadline, self._ends_at)
        handle = self.idle_timer
        if handle is None or handle.cancelled() or handle.when() > when:
            if handle is not None:
                handle.cancel()
            self.idle_timer = self.loop.call_at(when, self._idle_check)

    def _idle_check(self) -> None:
        now = self.loop.time()
        when = min(self._deadline, self._ends_at)
        if now < when:
            self.idle_timer = self.loop.call_at(when, self._idle_check)
            return
        # Postfix's way: a 421 and close; not to a session hanging on purpose (a fault), nor
        # to one a freeze holds (a hung server says nothing, not even that it timed out).
        transport = self.transport
        silent = self._hanging or (self.info is not None and bool(self.info.held_by))
        try:
            if not silent and transport is not None and not transport.is_closing():
                text = str(SESSION_TOO_LONG if now >= self._ends_at else TIMED_OUT)
                self.sink.refused(self, text)
                transport.write(self._encode(text) + b"\r\n")  # type: ignore[attr-defined]
        finally:
            self.idle_timeout_expired()

    async def _hang(self) -> None:
        """Never answer: until the client leaves or the idle timer closes, silently."""
        self._hanging = True
        await asyncio.Future()

    # -- replies ----------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        if self.sink.by_stage[Stage.REPLY]:
            await self._before_reply()
        transport = self.transport
        if transport is None or transport.is_closing():
            # Closed (a 421, a timeout) with pipelined commands still buffered: stop as the
            # coming connection_lost would, before journaling a reply that is never sent.
            raise asyncio.CancelledError
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        first = text[:1]
        refusal = first == "4" or first == "5"
        error = False
        if refusal:
            # aiosmtpd echoes an unknown command back; RFC 5321 reply text is printable.
            text = _CONTROL.sub("?", _with_enhanced(text))
            status = text  # type: ignore[assignment]
            self.sink.refused(self, text)
            error = text[:3] in _PROTOCOL_ERRORS
            if error:
                self._errors += 1
        if text[3:4] == "-":
            # A line of a multi-line reply ("250-SIZE …"): held and sent with the last line
            # in one write; aiosmtpd pushes an EHLO reply line by line, each with a drain.
            self._continued.append(self._encode(status))
            return
        if self._continued:
            self._continued.append(self._encode(status))
            status = b"\r\n".join(self._continued)  # type: ignore[assignment]
            self._continued.clear()
        await super().push(status)
        if refusal and text.startswith("421"):
            self._close()
        elif error and self._errors >= self.sink.config.max_errors:
            await self.push(str(TOO_MANY_ERRORS))
        self._replies += 1
        if self._replies % _FAIR_SHARE == 0:
            await asyncio.sleep(0)  # others' turn, if this client pipelines a flood

    async def _before_reply(self) -> None:
        """The effects at `reply` (every reply, the banner included): delays add up, and a
        freeze holds the reply in the sink's `decide` until it clears.

        A client that leaves meanwhile cancels the session here (aiosmtpd does, at its
        EOF); our side is closed too, as after a hang, or a held banner would leave the
        session half-open and counted as active.
        """
        try:
            await self.sink.decide(Stage.REPLY, self.sink.context(self))
        except asyncio.CancelledError:
            self._close()
            raise

    def _encode(self, status: AnyStr) -> bytes:
        if isinstance(status, bytes):
            return status
        return status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")

    # -- commands: remember the stage for the refusals journal --------------------------

    async def smtp_HELO(self, hostname: str) -> None:
        self.stage = Stage.EHLO
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.stage = Stage.EHLO
        # aiosmtpd raises MAIL's limit by its ESMTP parameters' length at every EHLO.
        self.command_size_limits.clear()
        await super().smtp_EHLO(hostname)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """RFC 3207 forbids STARTTLS inside TLS; aiosmtpd would answer 220 and then fail."""
        if self.tls_active:
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def handle_exception(self, error: Exception) -> str:
        """A failed TLS handshake is the client's doing: one line, not a traceback."""
        if isinstance(error, TLSSetupException):
            peer = self.session.peer if self.session else None
            logging.getLogger("mail.log").warning(
                "%r TLS handshake failed: %s", peer, error.__cause__ or error
            )
            return "421 4.7.0 TLS handshake failed"  # aiosmtpd closes without sending it
        return await super().handle_exception(error)

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> Missing | bytes:
        """aiosmtpd's, but an answer longer than a line gets 500 5.5.6 (RFC 4954) and is
        discarded as it arrives; aiosmtpd's readline raised, and the reply named the error."""
        if isinstance(challenge, str):
            challenge = challenge.encode()
        await self.push(b"334 " + (b64encode(challenge) if encode_to_b64 else challenge))
        line = await self._read_line()
        if line is None:
            await self.push(str(AUTH_LINE_TOO_LONG))
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 Auth aborted")
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING

    async def _read_line(self) -> bytes | None:
        """The next line (what came before EOF at the end); None when it was too long."""
        reader = self.reader
        too_long = False
        while True:
            try:
                line = await reader.readuntil()
            except asyncio.LimitOverrunError as exc:
                await reader.read(exc.consumed)  # discarded as it arrives
                too_long = True
                continue
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
            return None if too_long else line

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.stage = Stage.MAIL
        self.msg_id = ""
        self.refused_for = None
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self.stage = Stage.RCPT
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA read in bulk: one `readuntil` per '.CRLF' in the message, not per line."""
        self.stage = Stage.DATA
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self.data_rcpts = len(self.envelope.rcpt_tos)
        if self.sink.by_stage[Stage.DATA]:
            decision = await self.sink.decide(Stage.DATA, self.sink.context(self))
            if isinstance(decision, Reply):
                await self.push(str(decision))
                return
            if decision is Action.HANG:
                await self._hang()
            if decision is Action.DROP:
                self._close()
                return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_message()
        self.stage = Stage.DOT
        if content is None:
            self.end_transaction()
            await self.push(str(MESSAGE_TOO_BIG))
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        self.end_transaction()
        if status is Action.DROP:
            self._close()
            return
        if status is Action.HANG:
            await self._hang()
        if status[:1] == "2":
            self._errors = 0
        await self.push(status)
        self.reset_idle_timer()  # the idle clock restarts after the message, not at DATA

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """(address, parameters) of a MAIL/RCPT argument; plain paths skip the header parser."""
        match = _PLAIN_PATH.match(arg)
        if match is None:
            if _CONTROL.search(arg) or _UNDECODABLE.search(arg):
                return None, None  # 553 5.1.3 malformed address, not a NUL in the journal
            return super().parse_path(arg)
        local, domain, rest = match.groups()
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return f"{local}@{domain}", rest or ""

    async def _read_message(self) -> bytes | None:
        """The message with dot-stuffing undone, or None when it was over the SIZE limit.

        Read in pieces that end at '.CRLF', or of at most _DATA_CHUNK bytes in a stretch
        without one. Past the SIZE limit the pieces are dropped as they come, so a client
        that sends far more than it may costs no more memory than one that sends SIZE.
        """
        reader = self.reader
        limit = self.data_size_limit or 0
        chunks: list[bytes] = []
        size = 0
        line_start = True  # True when what came before ends a line
        with reader_limit(reader, _DATA_CHUNK):  # the reader's own guards command lines
            while True:
                try:
                    piece = await reader.readuntil(b".\r\n")
                    end = piece.endswith(_TERMINATOR) or (line_start and len(piece) == 3)
                    line_start = True
                except asyncio.LimitOverrunError as exc:
                    # A chunk without '.CRLF' (or with it only past the chunk): take it but
                    # for 2 bytes more than readuntil keeps, so that a terminator whose
                    # 'CRLF.' came and whose 'CRLF' is still to come is seen whole.
                    piece = await reader.read(exc.consumed - 2)
                    end = line_start = False
                if end:
                    piece = piece[:-3]
                size += len(piece)
                if not limit or size <= limit:
                    chunks.append(piece)
                elif chunks:
                    chunks.clear()  # over SIZE: what came and what comes is dropped
                if end:
                    break
        if limit and size > limit:
            return None
        content = b"".join(chunks)
        # RFC 5321 4.5.2: a leading dot on any line was added by the sender.
        if b"\n." in content:
            content = content.replace(b"\r\n.", b"\r\n")
        if content.startswith(b"."):
            content = content[1:]
        return content
