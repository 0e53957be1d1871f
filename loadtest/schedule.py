"""The open-model send schedule: every message has an intended send time.

Load is offered at the campaign's rate whatever the servers do; when they stall, messages
wait and their lateness (start minus intended) is recorded. Nothing is skipped or re-paced.
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stage:
    """`duration_s` seconds at `rate` msgs/s, or ramping linearly to `end_rate`."""

    duration_s: float
    rate: float
    end_rate: float | None = None

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError("stage duration must be > 0")
        if self.rate < 0 or (self.end_rate is not None and self.end_rate < 0):
            raise ValueError("stage rates must be >= 0")

    @property
    def final_rate(self) -> float:
        return self.rate if self.end_rate is None else self.end_rate

    def count(self, tau: float) -> float:
        """Messages due in the first `tau` seconds of this stage."""
        slope = (self.final_rate - self.rate) / self.duration_s
        return self.rate * tau + slope * tau * tau / 2.0

    def time_of(self, n: float) -> float:
        """Seconds into the stage at which `n` messages are due (inverse of `count`)."""
        if n <= 0:
            return 0.0
        slope = (self.final_rate - self.rate) / self.duration_s
        if abs(slope) < 1e-12:
            return n / self.rate
        # Stable root of slope/2 t^2 + rate t - n = 0.
        disc = self.rate * self.rate + 2.0 * slope * n
        return 2.0 * n / (self.rate + math.sqrt(max(0.0, disc)))


class Schedule:
    """Stages laid end to end; message k (from 0) is due when k messages are due before it."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        if not stages:
            raise ValueError("a schedule needs at least one stage")
        self.stages = list(stages)
        self.starts: list[float] = []  # stage start, seconds
        self.before: list[float] = []  # messages due before the stage
        self.ends: list[float] = []  # messages due by the end of the stage
        t = n = 0.0
        for stage in self.stages:
            self.starts.append(t)
            self.before.append(n)
            t += stage.duration_s
            n += stage.count(stage.duration_s)
            self.ends.append(n)
        self.duration_s = t
        # Message k is in the campaign when it is due strictly before the end.
        self.total = max(0, math.ceil(n - 1e-9))

    def at(self, k: int) -> float:
        """Intended send time of message k, seconds from the campaign start."""
        if not 0 <= k < self.total:
            raise IndexError(k)
        i = bisect_left(self.ends, k - 1e-9)  # the first stage by whose end k is due
        return self.starts[i] + self.stages[i].time_of(k - self.before[i])

    def rate_at(self, t: float) -> float:
        """Offered rate (msgs/s) at `t` seconds."""
        if t < 0 or t >= self.duration_s:
            return 0.0
        i = bisect_right(self.starts, t) - 1
        stage = self.stages[i]
        tau = t - self.starts[i]
        return stage.rate + (stage.final_rate - stage.rate) * tau / stage.duration_s

    def due_by(self, t: float) -> int:
        """How many messages are due in [0, t)."""
        if t <= 0:
            return 0
        if t >= self.duration_s:
            return self.total
        i = bisect_right(self.starts, t) - 1
        return min(self.total, math.ceil(self.before[i] + self.stages[i].count(t - self.starts[i])))


@dataclass(frozen=True, slots=True)
class Ticket:
    """One attempt to hand to a sender: which message, which try, when it was meant to go."""

    index: int
    attempt: int
    intended: float  # seconds from start: the message's first intended time
    due: float  # seconds from start: when this attempt became due
    avoid: str | None = None


@dataclass(frozen=True)
class Priority:
    """Which due message goes first: `of(k)` is message k's priority (its stream's,
    loadtest.campaign.StreamPlan), higher first; `highest` the most any message has."""

    of: Callable[[int], int]
    highest: int


class DueQueue:
    """Tickets already due, in the order a sender that cannot keep up takes them: the
    highest priority first; within one priority the earliest due, a retry before a fresh
    message due at the same moment, then the order they came in. With one priority for
    all, that is the schedule's own order (what Dispatcher hands out without priorities)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, int, Ticket]] = []
        self._seq = itertools.count()

    def push(self, ticket: Ticket, priority: int, at: float, retry: bool) -> None:
        """`at`: when it fell due (a requeued ticket keeps its attempt's `due`, yet waited
        until `at` like a retry)."""
        entry = (-priority, at, 0 if retry else 1, next(self._seq), ticket)
        heapq.heappush(self._heap, entry)

    def pop(self) -> Ticket:
        return heapq.heappop(self._heap)[4]

    def head(self) -> tuple[int, float] | None:
        """The priority and due time of the ticket `pop` would give; None when empty."""
        if not self._heap:
            return None
        negated, due = self._heap[0][:2]
        return -negated, due

    def __len__(self) -> int:
        return len(self._heap)


# Fresh messages one `take` classifies at most (each costs its stream's draw, ~8 us): a
# sender far behind its schedule catches up over several takes, never stalling its users.
SCAN_LIMIT = 256


class Dispatcher:
    """Hands out one worker's share of the schedule in due order, retries included.

    Worker `share` of `of` takes messages k with k % of == share, so the offered rate over
    all workers is the schedule's. Retries wait in a heap like an MTA's deferred queue.

    With a `priority` (streams of different priorities), what is due goes out by priority
    first (`DueQueue`): a sender that cannot keep up sends the due messages of the
    higher-priority stream before the others, which wait. A retry that is due competes by
    its message's priority like a fresh message: a due transactional retry goes before due
    promotional mail, a promotional retry waits behind due transactional mail. Without one,
    the order is the schedule's, exactly as before priorities existed.
    """

    def __init__(
        self, schedule: Schedule, share: int = 0, of: int = 1, priority: Priority | None = None
    ) -> None:
        if not 0 <= share < of:
            raise ValueError(f"share {share} of {of}")
        self.schedule = schedule
        self.next_index = share
        self.step = of
        self.retries: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self.in_flight = 0
        self.priority = priority
        self.due = DueQueue()  # only with a priority: what is due, best first

    @property
    def planned(self) -> int:
        """Messages in this worker's share."""
        total, share = self.schedule.total, self.next_index % self.step
        return max(0, (total - share + self.step - 1) // self.step)

    def take(self, now: float) -> Ticket | float | None:
        """A ticket due by `now`, else seconds to wait, else None when all is done."""
        if self.priority is not None:
            return self._take_by_priority(now, self.priority)
        fresh_due = self._fresh_due()
        retry_due = self.retries[0][0] if self.retries else None
        if fresh_due is None and retry_due is None:
            return 0.05 if self.in_flight else None
        if retry_due is not None and (fresh_due is None or retry_due <= fresh_due):
            if retry_due > now:
                return retry_due - now
            ticket = heapq.heappop(self.retries)[2]
        else:
            assert fresh_due is not None
            if fresh_due > now:
                return fresh_due - now
            ticket = self._fresh(fresh_due)
        self.in_flight += 1
        return ticket

    def _fresh_due(self) -> float | None:
        return self.schedule.at(self.next_index) if self.next_index < self.schedule.total else None

    def _fresh(self, due: float) -> Ticket:
        ticket = Ticket(self.next_index, 1, due, due)
        self.next_index += self.step
        return ticket

    def _take_by_priority(self, now: float, priority: Priority) -> Ticket | float | None:
        """The best due ticket (DueQueue's order). Due retries join the queue; fresh
        messages are classified in schedule order only until no unclassified one could
        come first (the best found has the highest priority and is due no later than the
        next fresh message), at most SCAN_LIMIT per take."""
        while self.retries and self.retries[0][0] <= now:
            at, _, ticket = heapq.heappop(self.retries)
            self.due.push(ticket, priority.of(ticket.index), at, retry=True)
        for _ in range(SCAN_LIMIT):
            fresh_due = self._fresh_due()
            if fresh_due is None or fresh_due > now:
                break
            head = self.due.head()
            if head is not None and head[0] >= priority.highest and head[1] <= fresh_due:
                break
            index = self.next_index
            self.due.push(self._fresh(fresh_due), priority.of(index), fresh_due, retry=False)
        if self.due:
            self.in_flight += 1
            return self.due.pop()
        waits = [t for t in (self._fresh_due(), self.retries[0][0] if self.retries else None)
                 if t is not None]  # fmt: skip
        if not waits:
            return 0.05 if self.in_flight else None
        return min(waits) - now

    def done(self, ticket: Ticket) -> None:
        """The ticket's attempt is over and the message needs no more tries."""
        self.in_flight -= 1

    def retry(self, ticket: Ticket, at: float, avoid: str | None) -> None:
        """Try the message again at `at` seconds from start."""
        self.in_flight -= 1
        again = Ticket(ticket.index, ticket.attempt + 1, ticket.intended, at, avoid)
        heapq.heappush(self.retries, (at, next(self._seq), again))

    def requeue(self, ticket: Ticket, at: float) -> None:
        """Put the ticket back untried (no server could take it); same attempt number."""
        self.in_flight -= 1
        heapq.heappush(self.retries, (at, next(self._seq), ticket))

    def pending(self) -> int:
        """Messages not finished: not yet started, due and waiting their turn, waiting for
        a retry, or in flight."""
        unstarted = len(range(self.next_index, self.schedule.total, self.step))
        return unstarted + len(self.due) + len(self.retries) + self.in_flight
