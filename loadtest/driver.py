"""One process's share of a campaign: take the next due message, route it, send, learn.

This is the loop a Locust user runs one step at a time, kept apart from Locust so it can
be tested on its own and reasoned about without gevent.

Recipients are followed one by one, as an MTA does: a recipient whose RCPT got a 5xx is
done (a retry of its message leaves it out), and an address that hard-bounced is put on
the process's suppression list (loadtest.suppression) and left out of every later
envelope. A message with no recipient left to send is not sent: its journal row says
`suppressed` (no server, no SMTP) and ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.bounce_codes import suppresses
from loadtest.campaign import Message, MessageFactory
from loadtest.client import Attempt, Sender
from loadtest.outcomes import Outcome, Phase
from loadtest.retry import RetryPolicy
from loadtest.routing import Policy, Result
from loadtest.schedule import Dispatcher, Ticket
from loadtest.suppression import SUPPRESSED, Suppression
from maildrill.records import AttemptRecord

# rcpt_replies' marks for a recipient left out of an attempt (maildrill.records).
NOT_SENT_SUPPRESSED = "s"
NOT_SENT_FINISHED = "f"

NO_SERVER_WAIT_S = 0.1  # every circuit open: look again this soon


@dataclass(frozen=True, slots=True)
class Step:
    """What one step did: an attempt, or how long to wait (neither: the share is done)."""

    record: Attempt | None = None
    wait: float | None = None


class Driver:
    def __init__(
        self,
        dispatcher: Dispatcher,
        factory: MessageFactory,
        policy: Policy,
        retry: RetryPolicy,
        t0: float,
        emit: Callable[[tuple[Any, ...]], None],
        worker: str = "local",
        suppression: Suppression | None = None,
        taken: Callable[[], None] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.factory = factory
        self.policy = policy
        self.retry = retry
        self.t0 = t0
        self.worker = worker
        self.emit = emit  # takes each attempt's journal row (AttemptRecord.row)
        self.suppression = Suppression() if suppression is None else suppression
        # Called when a ticket is taken, before its attempt (loadtest.idle_users: the idle
        # users' watch for the next due message passes on).
        self.taken = taken
        # Message index -> its recipients (positions) a 5xx ended, while a retry waits.
        self.finished: dict[int, frozenset[int]] = {}

    def step(self, sender: Sender) -> Step:
        now = time.time()
        taken = self.dispatcher.take(now - self.t0)
        if taken is None:
            return Step()
        if not isinstance(taken, Ticket):
            return Step(wait=taken)
        ticket = taken
        if self.taken is not None:
            self.taken()
        message = self.factory.build(ticket.index, now)
        marks, positions = self._envelope(ticket, message)
        if not positions:
            self._not_sent(ticket, message, marks, now)
            return Step(wait=0.0)
        mono = time.monotonic()
        exclude = frozenset({ticket.avoid}) if ticket.avoid else frozenset()
        server = self.policy.choose(message.stream, mono, exclude)
        if server is None and exclude:
            server = self.policy.choose(message.stream, mono)
        if server is None:
            self.dispatcher.requeue(ticket, now - self.t0 + NO_SERVER_WAIT_S)
            return Step(wait=NO_SERVER_WAIT_S)
        record = Attempt(
            msg_id=message.msg_id,
            stream=message.stream,
            attempt=ticket.attempt,
            server=server,
            intended=self.t0 + ticket.intended,
            due=self.t0 + ticket.due,
            start=now,
        )
        envelope = tuple(message.recipients[p] for p in positions)
        try:
            sender.send(server, record, message.sender, envelope, message.data)
        except BaseException:
            # The harness is stopping this sender mid-attempt (greenlet killed, Ctrl-C):
            # journal what is known, the message may or may not have arrived.
            record.outcome = Outcome.INTERRUPTED
            record.end = time.time()
            record.error = "interrupted"
            record.rcpt_replies = _replies(marks, positions, record.replies)
            self.dispatcher.done(ticket)
            self.finished.pop(ticket.index, None)
            self._journal(record, message.stream, final=True)
            raise
        record.rcpt_replies = _replies(marks, positions, record.replies)
        result = Result(record.outcome, record.phase, record.code)
        self.policy.report(server, result, time.monotonic())
        ended = self._learn(record, message, positions)
        again = self.retry.decide(server, result, ticket.attempt)
        if again is not None and set(positions) <= ended:
            again = None  # nobody left to try again for
        if again is None:
            self.dispatcher.done(ticket)
            self.finished.pop(ticket.index, None)
        else:
            self.finished[ticket.index] = self.finished.get(ticket.index, frozenset()) | ended
            self.dispatcher.retry(ticket, record.end - self.t0 + again.after_s, again.avoid)
        self._journal(record, message.stream, final=again is None)
        return Step(record=record)

    def _envelope(self, ticket: Ticket, message: Message) -> tuple[list[str], list[int]]:
        """Per recipient of the message, its mark ("" when it is sent), and the positions
        sent: all but those a 5xx ended in an earlier attempt and those suppressed."""
        ended = self.finished.get(ticket.index, frozenset())
        marks: list[str] = []
        positions: list[int] = []
        for position, address in enumerate(message.recipients):
            if position in ended:
                marks.append(NOT_SENT_FINISHED)
            elif address in self.suppression:
                marks.append(NOT_SENT_SUPPRESSED)
            else:
                marks.append("")
                positions.append(position)
        return marks, positions

    def _learn(self, record: Attempt, message: Message, positions: list[int]) -> set[int]:
        """The positions this attempt ended with a 5xx at RCPT; every address a hard bounce
        says is bad is suppressed (a 5xx at its RCPT, or to the message after it)."""
        ended: set[int] = set()
        after_rcpt = record.phase in (Phase.DATA, Phase.DOT)
        for (code, enhanced), position in zip(record.replies, positions, strict=False):
            address = message.recipients[position]
            if code >= 500:
                ended.add(position)
                if suppresses("rcpt", code, enhanced):
                    self.suppression.add(address)
            elif (
                code < 400
                and after_rcpt
                and record.outcome is Outcome.REJECTED
                and suppresses(record.phase.value, record.code, record.enhanced)
            ):
                self.suppression.add(address)
        return ended

    def _not_sent(self, ticket: Ticket, message: Message, marks: list[str], now: float) -> None:
        """Journal a message not sent, every recipient left suppressed: this ends it."""
        self.dispatcher.done(ticket)
        self.finished.pop(ticket.index, None)
        row = AttemptRecord(
            run_id=self.factory.run_id,
            worker=self.worker,
            msg_id=message.msg_id,
            stream=message.stream,
            attempt=ticket.attempt,
            server="",
            intended=self.t0 + ticket.intended,
            due=self.t0 + ticket.due,
            start=now,
            connected=None,
            end=now,
            phase="",
            code=None,
            enhanced="",
            outcome=SUPPRESSED,
            bytes=0,
            recipients=0,
            recipients_refused=0,
            new_connection=False,
            retry=ticket.attempt > 1,
            failover=False,
            final=True,
            maybe_duplicate=False,
            error="",
            rcpt_replies=";".join(marks),
        )
        self.emit(row.row())

    def _journal(self, record: Attempt, stream: str, final: bool) -> None:
        failover = record.server != self.policy.preferred(stream)
        self.emit(record.as_record(self.factory.run_id, self.worker, failover, final).row())


def _replies(marks: list[str], positions: list[int], replies: list[tuple[int, str]]) -> str:
    """The journal's rcpt_replies: per recipient of the message its mark, or the reply
    to its RCPT ("250", "550 5.1.1"), or "" when the attempt ended before it."""
    cells = list(marks)
    for (code, enhanced), position in zip(replies, positions, strict=False):
        cells[position] = f"{code} {enhanced}" if enhanced else str(code)
    return ";".join(cells)
