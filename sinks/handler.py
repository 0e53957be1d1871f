"""The aiosmtpd handler: asks the sink's active effects at each stage, journals receipts."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiosmtpd.smtp import Envelope, Session

from sinks.authcheck import AuthVerdicts
from sinks.authcheck.checker import MessageChecker
from sinks.backup_mx import QueueWriteError, RelayQueue
from sinks.effects import Action, Stage
from sinks.headers import message_ids
from sinks.protocol import SessionOwner, SinkSMTP
from sinks.replies import QUEUE_WRITE_ERROR, TOO_MANY_RECIPIENTS, Reply

_HELO_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_[]:")


def helo_name(name: str) -> str:
    """The sender's EHLO name for the journal: a name or address literal, never garbage."""
    return "".join(c if c in _HELO_KEEP else "?" for c in name[:64])


log = logging.getLogger("mail.log")


class HandlerOwner(SessionOwner, Protocol):
    """What the handler asks of its sink (`sinks.sink.Sink`) besides what a connection does.

    A protocol, so that this module does not import the sink that imports it.
    """

    @property
    def name(self) -> str: ...
    @property
    def relay(self) -> RelayQueue | None: ...  # a backup MX's queue to its upstream
    @property
    def checker(self) -> MessageChecker | None: ...  # `verify:`: SPF, DKIM, DMARC, PTR

    def received(
        self,
        server: SinkSMTP,
        envelope: Envelope,
        msg_id: str,
        message_id: str,
        outcome: str,
        auth: AuthVerdicts | None = None,
    ) -> str: ...


class SinkHandler:
    def __init__(self, sink: HandlerOwner) -> None:
        self.sink = sink
        config = sink.config
        drop = set()
        if not config.eightbitmime:
            drop.add("8BITMIME")
        if not config.smtputf8:
            drop.add("SMTPUTF8")
        if config.auth is None:
            drop.add("AUTH")
        self._drop_keywords = drop
        self._pipelining = config.pipelining
        self._max_recipients = config.max_recipients

    async def handle_EHLO(
        self,
        server: SinkSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self.sink.by_stage[Stage.EHLO]:
            decision = await self.sink.decide(Stage.EHLO, self.sink.context(server))
            if isinstance(decision, Reply):
                return [str(decision)]
        self._greeted(server, session, hostname)
        lines = [r[4:] for r in responses]
        if self._drop_keywords:
            lines = [x for x in lines if x.split(" ", 1)[0] not in self._drop_keywords]
        if self._pipelining:
            lines.insert(-1, "PIPELINING")
        last = len(lines) - 1
        return [("250 " if i == last else "250-") + x for i, x in enumerate(lines)]

    async def handle_HELO(
        self, server: SinkSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        if self.sink.by_stage[Stage.EHLO]:
            decision = await self.sink.decide(Stage.EHLO, self.sink.context(server))
            if isinstance(decision, Reply):
                return str(decision)
        self._greeted(server, session, hostname)
        return f"250 {server.hostname}"

    @staticmethod
    def _greeted(server: SinkSMTP, session: Session, hostname: str) -> None:
        session.host_name = hostname
        if server.info is not None:  # cleaned once per session, not once per message
            server.info.helo = helo_name(hostname)

    async def handle_MAIL(
        self,
        server: SinkSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.sink.by_stage[Stage.MAIL]:
            decision = await self.sink.decide(Stage.MAIL, self.sink.context(server, address))
            if isinstance(decision, Reply):
                return str(decision)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SinkSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return str(TOO_MANY_RECIPIENTS)
        if self.sink.by_stage[Stage.RCPT]:
            decision = await self.sink.decide(Stage.RCPT, self.sink.context(server, address))
            if isinstance(decision, Reply):
                return str(decision)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SinkSMTP, session: Session, envelope: Envelope) -> Any:
        content = envelope.content
        assert isinstance(content, bytes)
        msg_id, message_id = message_ids(content)
        server.msg_id = msg_id
        auth = None
        checker = self.sink.checker
        if checker is not None:
            # A provider checks the message once it is in, before its final reply.
            auth, refusal = await checker.check(
                peer_ip=server.info.peer_ip if server.info else "",
                helo=session.host_name or "",
                mail_from=envelope.mail_from or "",
                message=content,
            )
            if refusal is not None:
                server.refused_for = auth  # its refusal journals the verdicts (Sink.refused)
                return str(refusal)
        if self.sink.by_stage[Stage.DOT]:
            ctx = self.sink.context(server)
            ctx.size = len(content)
            decision = await self.sink.decide(Stage.DOT, ctx)
            if isinstance(decision, Reply):
                return str(decision)
            if decision is Action.DROP:
                self.sink.received(server, envelope, msg_id, message_id, "dropped", auth)
                return Action.DROP
            if decision is Action.HANG:
                return Action.HANG
        outcome = "accepted" if self.sink.relay is None else "queued"
        try:
            queue_id = self.sink.received(server, envelope, msg_id, message_id, outcome, auth)
        except QueueWriteError:  # not stored: the client must keep it and try again
            return str(QUEUE_WRITE_ERROR)
        except OSError as exc:
            # The receipt could not be journaled (a full disk): a 4xx, so the client keeps
            # the message and tries again, never aiosmtpd's 500, which would bounce it. A
            # backup MX may already hold it and forward it: at least once, as any MTA.
            log.error("%s: message %s not journaled (%s): 451 sent", self.sink.name, msg_id, exc)
            return str(QUEUE_WRITE_ERROR)
        if self.sink.by_stage[Stage.ACK]:
            ctx = self.sink.context(server)
            ctx.size = len(content)
            decision = await self.sink.decide(Stage.ACK, ctx)
            if isinstance(decision, Reply) or decision in (Action.DROP, Action.HANG):
                return decision if isinstance(decision, Action) else str(decision)
        return f"250 2.0.0 Ok: queued as {queue_id}"
