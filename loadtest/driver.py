"""One process's share of a campaign: take the next due message, route it, send, learn.

This is the loop a Locust user runs one step at a time, kept apart from Locust so it can
be tested on its own and reasoned about without gevent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.campaign import MessageFactory
from loadtest.client import Attempt, Sender
from loadtest.outcomes import Outcome
from loadtest.retry import RetryPolicy
from loadtest.routing import Policy, Result
from loadtest.schedule import Dispatcher, Ticket

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
    ) -> None:
        self.dispatcher = dispatcher
        self.factory = factory
        self.policy = policy
        self.retry = retry
        self.t0 = t0
        self.worker = worker
        self.emit = emit  # takes each attempt's journal row (AttemptRecord.row)

    def step(self, sender: Sender) -> Step:
        now = time.time()
        taken = self.dispatcher.take(now - self.t0)
        if taken is None:
            return Step()
        if not isinstance(taken, Ticket):
            return Step(wait=taken)
        ticket = taken
        message = self.factory.build(ticket.index, now)
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
        try:
            sender.send(server, record, message.sender, message.recipients, message.data)
        except BaseException:
            # The harness is stopping this sender mid-attempt (greenlet killed, Ctrl-C):
            # journal what is known, the message may or may not have arrived.
            record.outcome = Outcome.INTERRUPTED
            record.end = time.time()
            record.error = "interrupted"
            self.dispatcher.done(ticket)
            self._journal(record, message.stream, final=True)
            raise
        result = Result(record.outcome, record.phase, record.code)
        self.policy.report(server, result, time.monotonic())
        again = self.retry.decide(server, result, ticket.attempt)
        if again is None:
            self.dispatcher.done(ticket)
        else:
            self.dispatcher.retry(ticket, record.end - self.t0 + again.after_s, again.avoid)
        self._journal(record, message.stream, final=again is None)
        return Step(record=record)

    def _journal(self, record: Attempt, stream: str, final: bool) -> None:
        failover = record.server != self.policy.preferred(stream)
        self.emit(record.as_record(self.factory.run_id, self.worker, failover, final).row())
