"""aiosmtpd's SMTP state machine with a faster DATA path and hooks for socket-level faults.

Policy lives in the handler (`sinks.handler`); this class only adds what a handler cannot
do: act before the banner (hang, busy), read DATA in bulk instead of line by line, close
after a 421, leave without a reply (drop), and journal every 4xx/5xx it sends.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sys
from types import MethodType
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.smtp import SMTP, Session, syntax

from sinks.effects import Action, SessionInfo, Stage
from sinks.replies import MESSAGE_TOO_BIG, Reply

if TYPE_CHECKING:
    from sinks.sink import Sink

_TERMINATOR = b"\r\n.\r\n"

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
# RFC 5321 paths hold no control characters; aiosmtpd's parser lets them through.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class QuietSession(Session):
    """aiosmtpd 1.4 sets its deprecated `login_data` itself after AUTH and warns each time."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class SinkSMTP(SMTP):
    def __init__(
        self, sink: Sink, handler: Any, *, like: SinkSMTP | None = None, **kwargs: Any
    ) -> None:
        """A protocol for one connection; `like`: a template of this sink to copy (see below)."""
        if like is None:
            # aiosmtpd warns when AUTH is required without TLS. A drill may ask for just
            # that, and under `-W error` the warning would stop the sink: set it after.
            auth_required = kwargs.pop("auth_required", False)
            super().__init__(handler, **kwargs)
            self._auth_required = auth_required
        else:
            self._init_like(like)
        # aiosmtpd keeps these limits in one dict on the class, shared by every connection
        # (each EHLO raises MAIL's limit for all of them); each connection gets its own.
        limit = self.command_size_limit
        self.command_size_limits = collections.defaultdict(lambda: limit)
        self.sink = sink
        self.info: SessionInfo | None = None
        self.stage = Stage.CONNECT
        self.msg_id = ""
        self.ended = False
        self._deadline = 0.0
        self._continued: list[bytes] = []

    def _init_like(self, template: SinkSMTP) -> None:
        """Set up as SMTP.__init__ would, copying what it derived for this sink's template.

        SMTP.__init__ introspects the class and the handler (inspect.getmembers, dir,
        inspect.signature) and formats a log line, on every connection: that was a third
        of the CPU of a one-message session. All of it depends only on the class, the
        handler and the sink's settings, so it is done once per sink (the template) and
        copied; only the stream state is new, and the methods bound to the template are
        bound again to this connection.
        """
        self.__dict__.update(template.__dict__)
        loop = template.loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self._smtp_methods = {
            name: self._rebind(method) for name, method in template._smtp_methods.items()
        }
        self._auth_methods = {
            name: auth._replace(method=self._rebind(auth.method)) if auth.is_builtin else auth
            for name, auth in template._auth_methods.items()
        }

    def _rebind(self, method: Any) -> Any:
        """A method of the template, bound to this connection instead."""
        return MethodType(method.__func__, self)

    def _create_session(self) -> Session:
        return QuietSession(self.loop)

    # -- connection bookkeeping -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.info is None
        if first:
            peer = transport.get_extra_info("peername")
            peer_ip = peer[0] if isinstance(peer, tuple) else str(peer)
            self.info = SessionInfo(id=self.sink.next_session_id(), peer_ip=peer_ip)
            self.sink.session_opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.info is not None and not self.ended:
            self.ended = True
            self.sink.session_closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        assert self.info is not None
        if self.sink.by_stage[Stage.CONNECT]:
            try:
                decision = await self.sink.decide(Stage.CONNECT, self.sink.context(self))
                if decision is Action.HANG:
                    await asyncio.Future()  # until the client gives up or the idle timeout
            except asyncio.CancelledError:
                # The client left (eof_received cancels us). Close our side as aiosmtpd's
                # command loop does, or the session stays half-open and counted as active.
                self._close()
                raise
            if isinstance(decision, Reply):
                await self.push(str(decision))
                self._close()
                return
        await super()._handle_client()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the idle deadline; the timer is only re-armed when it fires too early.

        aiosmtpd cancels its timer and schedules a new one for every command line.
        """
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > self._deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._idle_check)
        else:
            self._timeout_cb()

    # -- replies ----------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        first = text[:1]
        refusal = first == "4" or first == "5"
        if refusal:
            text = _with_enhanced(text)
            status = text  # type: ignore[assignment]
            self.sink.refused(self, text)
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
        await super().smtp_EHLO(hostname)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """RFC 3207 forbids STARTTLS inside TLS; aiosmtpd would answer 220 and then fail."""
        if self._tls_protocol is not None:
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.stage = Stage.MAIL
        self.msg_id = ""
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
        if self.sink.by_stage[Stage.DATA]:
            decision = await self.sink.decide(Stage.DATA, self.sink.context(self))
            if isinstance(decision, Reply):
                await self.push(str(decision))
                return
            if decision is Action.HANG:
                await asyncio.Future()
            if decision is Action.DROP:
                self._close()
                return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_message()
        self.stage = Stage.DOT
        if content is None:
            self._set_post_data_state()
            await self.push(str(MESSAGE_TOO_BIG))
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        self._set_post_data_state()
        if status is Action.DROP:
            self._close()
            return
        if status is Action.HANG:
            await asyncio.Future()
        await self.push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """(address, parameters) of a MAIL/RCPT argument; plain paths skip the header parser."""
        match = _PLAIN_PATH.match(arg)
        if match is None:
            if _CONTROL.search(arg):
                return None, None  # 553 5.1.3 malformed address, not a NUL in the journal
            return super()._getaddr(arg)
        local, domain, rest = match.groups()
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return f"{local}@{domain}", rest or ""

    async def _read_message(self) -> bytes | None:
        """The message with dot-stuffing undone, or None when it was over the SIZE limit."""
        reader = self._reader
        limit = self.data_size_limit or 0
        saved = reader._limit  # type: ignore[attr-defined]
        # The reader's limit guards command lines; DATA may be as big as SIZE allows.
        reader._limit = limit + 4096 if limit else sys.maxsize  # type: ignore[attr-defined]
        chunks: list[bytes] = []
        size = 0
        too_big = False
        line_start = True  # True when what came before ends a line
        try:
            while True:
                try:
                    piece = await reader.readuntil(b".\r\n")
                except asyncio.LimitOverrunError as exc:
                    dropped = await reader.read(exc.consumed)
                    too_big = True
                    chunks.clear()
                    line_start = dropped.endswith(b"\r\n")
                    continue
                if piece.endswith(_TERMINATOR) or (line_start and len(piece) == 3):
                    if not too_big:
                        chunks.append(piece[:-3])
                    break
                line_start = True
                if too_big:
                    continue
                size += len(piece)
                if limit and size > limit:
                    too_big = True
                    chunks.clear()
                else:
                    chunks.append(piece)
        finally:
            reader._limit = saved  # type: ignore[attr-defined]
        if too_big:
            return None
        content = b"".join(chunks)
        if limit and len(content) > limit:
            return None
        # RFC 5321 4.5.2: a leading dot on any line was added by the sender.
        if b"\n." in content:
            content = content.replace(b"\r\n.", b"\r\n")
        if content.startswith(b"."):
            content = content[1:]
        return content
