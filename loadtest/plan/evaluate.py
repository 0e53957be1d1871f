"""The plan's question, asked of the fluid queue: does the campaign meet its deadline and its
headroom with these servers and this outage, and if not, how much more capacity would?

Pure: a `Question` (numbers only: no files, no YAML) in, an `Answer` out. The deliverable
rate over time (`supply`) follows the outage and the measured failover timings:

- before the outage, every server up: their rates summed (routing `pool`), or the first
  server's alone (routing `failover`: the others stand by);
- from the outage's start until `failover_s` (onset to the first message accepted
  elsewhere, detection included): nothing is delivered, the sender is still trying the
  server that died;
- then until the outage ends plus `failback_s` (clear to the first message accepted again
  by that server): the servers left;
- then every server again.

Extra capacity (what the plan says to buy) is pooled: servers that stay up throughout and
share the load with whichever server is serving; during the failover gap they too wait.
The least extra rate that meets the deadline is found by bisection on the model (the
completion time only falls as capacity grows); the headroom's need is arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from loadtest.plan import fluid

Routing = Literal["pool", "failover"]
# A plan over a week at 1 s steps is 604,800 steps; beyond this the step grows instead.
MAX_STEPS = 1_000_000
# Bisection stops when the bracket is within 0.1 % of its top (or 0.01 msgs/s).
REL_TOL = 1e-3
ABS_TOL = 0.01
# Past this many times the peak rate, more capacity cannot help: the gap decides.
MAX_EXTRA_FACTOR = 1000.0


@dataclass(frozen=True)
class Outage:
    server: str
    at_s: float
    duration_s: float


@dataclass(frozen=True)
class Timings:
    """A failover drill's measured times, seconds (see Failover in docs/metrics.md)."""

    detection_s: float = 0.0
    failover_s: float = 0.0
    failback_s: float = 0.0


@dataclass(frozen=True)
class StreamGroup:
    """Streams of one priority: their names and shares of the campaign."""

    priority: int
    streams: tuple[tuple[str, float], ...]

    @property
    def share(self) -> float:
        return sum(share for _, share in self.streams)


@dataclass(frozen=True)
class Question:
    offered: fluid.Offered
    groups: tuple[StreamGroup, ...]
    servers: Mapping[str, float]  # msgs/s each, in routing order
    routing: Routing
    outage: Outage | None
    timings: Timings
    headroom: float  # the share of each serving server's capacity left free at the peak
    deadline_s: float
    step_s: float


@dataclass(frozen=True)
class ServerLoad:
    capacity_msgs_per_s: float
    carried_msgs_per_s: float  # at the peak offered rate, every server up
    headroom: float  # 1 - carried / capacity


@dataclass(frozen=True)
class Answer:
    question: Question
    extra_msgs_per_s: float
    supply: fluid.Supply
    flow: fluid.Flow
    completion_s: float | None
    lateness: dict[int, fluid.Lateness | None]  # per group priority
    group_completion_s: dict[int, float | None]
    loads: dict[str, ServerLoad]
    peak_backlog: float
    peak_backlog_at_s: float
    drained_at_s: float | None  # the backlog back to (nearly) 0 after its peak

    @property
    def deadline_met(self) -> bool:
        return self.completion_s is not None and self.completion_s <= self.question.deadline_s

    @property
    def headroom_met(self) -> bool:
        return all(
            load.headroom >= self.question.headroom - 1e-9
            for load in self.loads.values()
            if load.carried_msgs_per_s > 0
        )

    @property
    def met(self) -> bool:
        return self.deadline_met and self.headroom_met


def serving_rate(servers: Mapping[str, float], up: set[str], routing: Routing) -> float:
    """What the servers that are up deliver together, by the routing."""
    rates = [rate for name, rate in servers.items() if name in up]
    if routing == "failover":
        return rates[0] if rates else 0.0
    return sum(rates)


def carries_mail(q: Question, server: str) -> bool:
    """Whether `server` delivers with every server up: each of a pool, the first under
    failover. A standby that dies changes nothing the sender sees."""
    return q.routing == "pool" or server == next(iter(q.servers), None)


def supply(q: Question, extra: float) -> fluid.Supply:
    everyone = set(q.servers)
    normal = serving_rate(q.servers, everyone, q.routing) + extra
    if q.outage is None or not carries_mail(q, q.outage.server):
        return fluid.Supply((0.0,), (normal,))
    o = q.outage
    left = serving_rate(q.servers, everyone - {o.server}, q.routing) + extra
    end = o.at_s + o.duration_s
    gap_end = min(o.at_s + q.timings.failover_s, end)
    # Until the sender fails over: under failover nothing is delivered (it still tries the
    # server that died); in a pool the others go on delivering what reaches them.
    gap = left if q.routing == "pool" else 0.0
    pieces = [(0.0, normal), (o.at_s, gap), (gap_end, left)]
    if gap_end < end:  # it failed over, so it has to fail back
        pieces.append((end + q.timings.failback_s, normal))
    else:  # never failed over: mail flows again when the server is back
        pieces.append((end, normal))
    starts: list[float] = []
    rates: list[float] = []
    for start, rate in pieces:
        if starts and start <= starts[-1]:
            starts[-1], rates[-1] = start, rate  # a zero-length piece: the later one holds
        elif rates and rate == rates[-1]:
            continue  # the same rate goes on (a pool's gap: the servers left, as after it)
        else:
            starts.append(start)
            rates.append(rate)
    return fluid.Supply(tuple(starts), tuple(rates))


def loads(q: Question, extra: float) -> dict[str, ServerLoad]:
    """Each server's share of the peak offered rate with every server up: in a pool, in
    proportion to capacity (extra capacity included); under failover, the first carries it
    all (with the extra) and the others stand by."""
    peak = q.offered.peak_msgs_per_s
    carrying = dict(q.servers) if q.routing == "pool" else dict(list(q.servers.items())[:1])
    total = sum(carrying.values()) + extra
    out = {}
    for name, rate in q.servers.items():
        carried = peak * rate / total if name in carrying and total > 0 else 0.0
        room = 1.0 - carried / rate if rate > 0 else (1.0 if carried == 0 else -math.inf)
        out[name] = ServerLoad(rate, carried, room)
    return out


def horizon_s(q: Question, sup: fluid.Supply) -> tuple[float, float]:
    """How far to run the queue, and on what step: past the window and the outage, then
    long enough to drain what is left at the final rate. Not to the deadline: a deadline
    far off would only coarsen the step (a million at most), and so every figure; the
    completion is compared with it instead."""
    end = max(q.offered.end_s, sup.starts[-1])
    step = max(q.step_s, end / MAX_STEPS)
    whole = fluid.Group(0, 1.0)
    left = float(fluid.flow(q.offered, sup, (whole,), step, end).backlog[0][-1])
    if left > fluid.HALF_MESSAGE and sup.final_rate > 0:
        end += left / sup.final_rate + 2 * step
        step = max(step, end / MAX_STEPS)
    return end, step


def answer(q: Question, extra: float = 0.0) -> Answer:
    sup = supply(q, extra)
    end, step = horizon_s(q, sup)
    groups = [fluid.Group(g.priority, g.share) for g in q.groups]
    f = fluid.flow(q.offered, sup, groups, step, end)
    order = sorted(q.groups, key=lambda g: -g.priority)  # the order flow() served them in
    late, done = {}, {}
    for g, arrived, departed in zip(order, f.arrived, f.departed, strict=True):
        late[g.priority] = fluid.lateness(f.t, arrived, departed)
        done[g.priority] = fluid.completion_s(f.t, departed, float(arrived[-1]))
    backlog = f.total_backlog
    k = int(backlog.argmax())
    after = backlog[k:] <= fluid.HALF_MESSAGE
    drained = float(f.t[k + int(after.argmax())]) if after.any() else None
    total = q.offered.total
    return Answer(
        question=q,
        extra_msgs_per_s=extra,
        supply=sup,
        flow=f,
        completion_s=fluid.completion_s(f.t, f.total_departed, total),
        lateness=late,
        group_completion_s=done,
        loads=loads(q, extra),
        peak_backlog=float(backlog[k]),
        peak_backlog_at_s=float(f.t[k]),
        drained_at_s=drained if backlog[k] > fluid.HALF_MESSAGE else None,
    )


def extra_for_headroom(q: Question) -> float:
    """The least extra rate that leaves `headroom` free on every serving server at the peak."""
    peak = q.offered.peak_msgs_per_s
    serving = serving_rate(q.servers, set(q.servers), q.routing)
    return max(0.0, peak / (1.0 - q.headroom) - serving) if q.headroom < 1 else math.inf


def extra_for_deadline(q: Question) -> float | None:
    """The least extra rate that meets the deadline (bisection); None when no amount does
    (the failover gap or the window itself leaves no time)."""
    if answer(q).deadline_met:
        return 0.0
    top = max(q.offered.peak_msgs_per_s, 1.0) * MAX_EXTRA_FACTOR
    if not answer(q, top).deadline_met:
        return None
    lo, hi = 0.0, max(q.offered.peak_msgs_per_s, 1.0)
    while not answer(q, hi).deadline_met:
        lo, hi = hi, hi * 2
    while hi - lo > max(ABS_TOL, REL_TOL * hi):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if answer(q, mid).deadline_met else (mid, hi)
    return hi


def extra_needed(q: Question) -> float | None:
    """The least extra rate meeting both the deadline and the headroom; None: none does."""
    deadline = extra_for_deadline(q)
    if deadline is None:
        return None
    need = max(deadline, extra_for_headroom(q))
    return None if math.isinf(need) else need


def extra_servers(q: Question, extra: float) -> dict[str, int]:
    """How many more servers of each measured kind give `extra` msgs/s."""
    return {name: math.ceil(extra / rate - 1e-9) for name, rate in q.servers.items() if rate > 0}
