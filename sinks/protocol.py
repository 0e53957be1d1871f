"""aiosmtpd's SMTP state machine with a faster DATA path and hooks for socket-level faults.

Policy lives in the handler (`sinks.handler`); this class only adds what a handler cannot
do: act before the banner (hang, busy), read DATA in bulk instead of line by line, close
after a 421, leave without a reply (drop), and journal every 4xx/5xx it sends.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.smtp import SMTP, Session

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


class QuietSession(Session):
    """aiosmtpd 1.4 sets its deprecated `login_data` itself after AUTH and warns each time."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class SinkSMTP(SMTP):
    def __init__(self, sink: Sink, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.info: SessionInfo | None = None
        self.stage = Stage.CONNECT
        self.msg_id = ""
        self.ended = False

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
        decision = await self.sink.decide(Stage.CONNECT, self.sink.context(self))
        if decision is Action.HANG:
            await asyncio.Future()  # until the client gives up or the idle timeout closes us
        if isinstance(decision, Reply):
            await self.push(str(decision))
            self._close()
            return
        await super()._handle_client()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- replies ----------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        first = text[:1]
        if first == "4" or first == "5":
            text = _ENHANCED.get(text, text)
            if text.startswith(("500 Error: command", "502")):
                text = text[:4] + "5.5.1 " + text[4:]
            status = text  # type: ignore[assignment]
            self.sink.refused(self, text)
            await super().push(status)
            if text.startswith("421"):
                self._close()
            return
        await super().push(status)

    # -- commands: remember the stage for the refusals journal --------------------------

    async def smtp_HELO(self, hostname: str) -> None:
        self.stage = Stage.EHLO
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.stage = Stage.EHLO
        await super().smtp_EHLO(hostname)

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
