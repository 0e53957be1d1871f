"""The fluid queue: messages as a liquid, servers as a drain, time in fixed steps.

A campaign of millions of messages is planned from its rates, not its messages: the offered
rate (piecewise linear: flat, ramps, a scenario's stages) and the deliverable rate (piecewise
constant: the servers up at each moment) are integrated exactly over each time step, and
the backlog follows Lindley's recursion B[n] = max(0, B[n-1] + a[n] - c[n]), which has the
closed form B = S - min(0, running min of S) with S the cumulative sum of a - c. So a plan
costs a few numpy passes over the steps, whatever the number of messages (issue 16 part 4).

Priority groups are served in order: the highest takes what it needs of each step's
capacity, the next gets what is left, and so on; within a group the service is first in,
first out, so every stream of a group sees the group's lateness. Lateness is the time from
when a message is due (offered) to when the fluid delivers it.

Everything here is pure: arrays in, arrays and numbers out. The plan's inputs are in
`loadtest.plan.spec`, the question it answers in `loadtest.plan.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

# A message counts as delivered when the fluid is within half a message of it.
HALF_MESSAGE = 0.5


@dataclass(frozen=True)
class Segment:
    """`duration_s` seconds from `start_s`, the rate going linearly from `rate` to `final_rate`."""

    start_s: float
    duration_s: float
    rate: float
    final_rate: float

    def count(self, tau: Array) -> Array:
        """Messages due in the first `tau` seconds of the segment (tau clipped to it)."""
        tau = np.clip(tau, 0.0, self.duration_s)
        slope = (self.final_rate - self.rate) / self.duration_s
        return np.asarray(self.rate * tau + slope * tau * tau / 2.0, dtype=np.float64)

    @property
    def total(self) -> float:
        return (self.rate + self.final_rate) * self.duration_s / 2.0


@dataclass(frozen=True)
class Offered:
    """The offered rate over time: segments laid end to end from 0; nothing after them."""

    segments: tuple[Segment, ...]

    @property
    def end_s(self) -> float:
        last = self.segments[-1]
        return last.start_s + last.duration_s

    @property
    def total(self) -> float:
        return sum(s.total for s in self.segments)

    @property
    def peak_msgs_per_s(self) -> float:
        return max(max(s.rate, s.final_rate) for s in self.segments)

    def peak_at_s(self) -> float:
        """The middle of the first stretch at the peak rate: a flat campaign's middle, a
        ramp's apex, the middle of a schedule's highest stage (a ramp into it included)."""
        peak = self.peak_msgs_per_s
        stretch: list[float] = []  # its start and end
        for s in self.segments:
            s_end = s.start_s + s.duration_s
            flat = s.rate == peak == s.final_rate
            if stretch and not (flat and s.start_s == stretch[1]):
                break  # the stretch ended
            if flat:
                stretch = [stretch[0] if stretch else s.start_s, s_end]
            elif s.rate == peak:  # falls from the peak at once
                stretch = [s.start_s, s.start_s]
                break
            elif s.final_rate == peak:  # rises to it at the end
                stretch = [s_end, s_end]
        return (stretch[0] + stretch[1]) / 2.0 if stretch else 0.0

    def max_rate(self, lo: float, hi: float) -> float:
        """The highest offered rate from `lo` to `hi` (at a segment's edge or theirs: the
        rate is linear in between)."""
        edges = [e for s in self.segments for e in (s.start_s, s.start_s + s.duration_s)]
        points = [lo, hi] + [e for e in edges if lo < e < hi]
        rates = []
        for t in points:
            for s in self.segments:
                if s.start_s <= t <= s.start_s + s.duration_s:
                    tau = t - s.start_s
                    rates.append(s.rate + (s.final_rate - s.rate) * tau / s.duration_s)
        return max(rates, default=0.0)

    def cumulative(self, t: Array) -> Array:
        """Messages due by each time in `t` (exact: the integral of the rate)."""
        out = np.zeros_like(t)
        for s in self.segments:
            out += s.count(t - s.start_s)
        return out


@dataclass(frozen=True)
class Supply:
    """The deliverable rate: `rates[i]` msgs/s from `starts[i]` to the next start (the last
    one holds for ever). `starts[0]` is 0."""

    starts: tuple[float, ...]
    rates: tuple[float, ...]

    def rate_at(self, t: float) -> float:
        i = int(np.searchsorted(np.asarray(self.starts), t, side="right")) - 1
        return self.rates[max(i, 0)]

    @property
    def final_rate(self) -> float:
        return self.rates[-1]

    def cumulative(self, t: Array) -> Array:
        """Messages the servers could take by each time in `t` (exact: piecewise linear)."""
        starts = np.asarray(self.starts, dtype=np.float64)
        rates = np.asarray(self.rates, dtype=np.float64)
        at_starts = np.concatenate(([0.0], np.cumsum(np.diff(starts) * rates[:-1])))
        i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, None)
        return np.asarray(at_starts[i] + rates[i] * (t - starts[i]), dtype=np.float64)


@dataclass(frozen=True)
class Group:
    """Streams served together (one priority), with their share of the campaign."""

    priority: int
    share: float


@dataclass(frozen=True)
class Flow:
    """The model's answer on the grid `t` (step ends; `t[0]` = 0). Per step n (1..N):
    `offered[n-1]` and `capacity[n-1]` are msgs in the step; per group g: `departed[g]` is
    the cumulative delivered (length N+1, from 0) and `backlog[g]` at the step ends."""

    t: Array
    offered: Array
    capacity: Array
    arrived: tuple[Array, ...]  # cumulative per group, length N+1
    departed: tuple[Array, ...]
    backlog: tuple[Array, ...]

    @property
    def step_s(self) -> float:
        return float(self.t[1] - self.t[0])

    @property
    def total_backlog(self) -> Array:
        return np.asarray(np.sum(self.backlog, axis=0), dtype=np.float64)

    @property
    def total_departed(self) -> Array:
        return np.asarray(np.sum(self.departed, axis=0), dtype=np.float64)


def lindley(arrivals: Array, capacity: Array) -> tuple[Array, Array]:
    """Backlog at each step's end and what was served in each step, for a queue that
    starts empty: B[n] = max(0, B[n-1] + a[n] - c[n]), in closed form (vectorised)."""
    walk = np.cumsum(arrivals - capacity)
    backlog = walk - np.minimum(np.minimum.accumulate(walk), 0.0)
    backlog = np.maximum(backlog, 0.0)
    before = np.concatenate(([0.0], backlog[:-1]))
    served = before + arrivals - backlog
    return backlog, np.maximum(served, 0.0)


def flow(offered: Offered, supply: Supply, groups: Sequence[Group], step_s: float,
         horizon_s: float) -> Flow:  # fmt: skip
    """Run the queue on steps of `step_s` from 0 to `horizon_s` (rounded up to a step)."""
    n = max(1, int(np.ceil(horizon_s / step_s - 1e-9)))
    t = np.arange(n + 1, dtype=np.float64) * step_s
    due = np.diff(offered.cumulative(t))
    capacity = np.diff(supply.cumulative(t))
    left = capacity
    arrived, departed, backlogs = [], [], []
    for g in sorted(groups, key=lambda g: -g.priority):
        arrivals = due * g.share
        backlog, served = lindley(arrivals, left)
        left = np.maximum(left - served, 0.0)
        arrived.append(np.concatenate(([0.0], np.cumsum(arrivals))))
        departed.append(np.concatenate(([0.0], np.cumsum(served))))
        backlogs.append(np.concatenate(([0.0], backlog)))
    return Flow(t, due, capacity, tuple(arrived), tuple(departed),
                tuple(backlogs))  # fmt: skip


def first_time(t: Array, cumulative: Array, q: Array) -> Array:
    """When `cumulative` (non-decreasing, on the grid `t`) first reaches each `q`, linear
    within a step; NaN where it never does."""
    i = np.searchsorted(cumulative, q, side="left")
    inside = (i > 0) & (i < len(t))
    j = np.clip(i, 1, len(t) - 1)
    lo, hi = cumulative[j - 1], cumulative[j]
    frac = np.where(hi > lo, (q - lo) / np.where(hi > lo, hi - lo, 1.0), 1.0)
    out = t[j - 1] + np.clip(frac, 0.0, 1.0) * (t[j] - t[j - 1])
    out = np.where(i == 0, t[0], out)
    return np.asarray(np.where(inside | (i == 0), out, np.nan), dtype=np.float64)


@dataclass(frozen=True)
class Lateness:
    """Percentiles of lateness (seconds from due to delivered) over a group's messages;
    `undelivered`: messages the horizon did not see delivered (left out of the rest)."""

    p50: float
    p95: float
    p99: float
    max: float
    undelivered: float


def lateness(t: Array, arrived: Array, departed: Array) -> Lateness | None:
    """Each step's arrivals are taken at their middle message: due in the step's middle,
    delivered when the departures reach it (FIFO); percentiles weighted by messages."""
    weights = np.diff(arrived)
    keep = weights > 0
    if not keep.any():
        return None
    mid_q = (arrived[:-1] + weights / 2.0)[keep]
    due_at = ((t[:-1] + t[1:]) / 2.0)[keep]
    done_at = first_time(t, departed, mid_q)
    w = weights[keep]
    ok = ~np.isnan(done_at)
    undelivered = float(w[~ok].sum())
    if not ok.any():
        return Lateness(np.nan, np.nan, np.nan, np.nan, undelivered)
    late = np.maximum(done_at[ok] - due_at[ok], 0.0)
    order = np.argsort(late, kind="stable")
    late, w = late[order], w[ok][order]
    cum = np.cumsum(w)

    def pct(p: float) -> float:
        k = int(np.searchsorted(cum, p / 100.0 * cum[-1], side="left"))
        return float(late[min(k, len(late) - 1)])

    return Lateness(pct(50), pct(95), pct(99), float(late[-1]), undelivered)


def completion_s(t: Array, departed: Array, total: float) -> float | None:
    """When the last message is delivered; None when the horizon does not see it."""
    if total <= 0:
        return 0.0
    at = first_time(t, departed, np.asarray([max(total - HALF_MESSAGE, 0.0)]))[0]
    return None if np.isnan(at) else float(at)
