"""Step-load capacity: offered vs accepted rate and p95 latency per constant-rate stage.

For each stage of the schedule whose rate is constant (no ramp, rate > 0) the window is
[stage start, stage end) from t0. Within it:

- offered: the stage's nominal rate (`offered_measured_msgs_per_s` counts the first
  attempts intended in the window, as a check);
- accepted: the messages offered in the window (intended in it) that were accepted on
  time, i.e. within `on_time_s` of their intended send time (1 s, plus the p95 latency
  SLO when there is one), per second of the window. A backlog left by an earlier step, or
  one that grows because the servers cannot keep up, makes messages late and lowers it;
- delivered: attempts accepted with their end in the window, per second: what the servers
  delivered while that load was offered (backlog included);
- p95/p99 latency (end - start, ms) of those delivered attempts, as the SLO measures it;
  p95 lateness (start - intended) of the first attempts intended in the window;
- within_slo: p95 within the scenario's `p95_latency_ms` SLO (always, without one);
- stable: accepted/offered >= 99% and within_slo.

The knee is the highest offered rate of a stable step. The maximum stable throughput is
the highest delivered rate sustained over a whole step with p95 within the SLO, whether or
not it kept up with the offered rate: beyond the knee, that is the plateau the servers
deliver while the backlog grows. (docs/metrics.md, Capacity, says the same for readers.)
The steps and the whole are the summary's parts `CapacityStep` and `Capacity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis.histograms import Slots
from loadtest.analysis.slo import parse_slo
from loadtest.analysis.summary_model import Capacity, CapacityStep
from loadtest.outcomes import Outcome
from loadtest.schedule import Schedule

STABLE_SHARE = 0.99
ON_TIME_S = 1.0  # plus the p95 latency SLO: how late an accepted message may be
P95_METRIC = "p95_latency_ms"


@dataclass(frozen=True)
class Window:
    stage: int  # index in the schedule, from 0
    start_s: float  # from t0
    duration_s: float
    rate: float  # offered msgs/s


def constant_windows(schedule: Schedule) -> list[Window]:
    """The stages of constant, non-zero rate, in schedule order."""
    windows = []
    for i, (stage, start) in enumerate(zip(schedule.stages, schedule.starts, strict=True)):
        if stage.final_rate == stage.rate and stage.rate > 0:
            windows.append(Window(i, start, stage.duration_s, stage.rate))
    return windows


def p95_limit(rules: Sequence[str]) -> float | None:
    """The tightest upper bound the SLOs put on p95 latency (ms), if any."""
    limits = [limit for metric, op, limit in map(parse_slo, rules)
              if metric == P95_METRIC and op in ("<=", "<")]  # fmt: skip
    return min(limits) if limits else None


def on_time_s(p95_limit_ms: float | None) -> float:
    return ON_TIME_S + (p95_limit_ms / 1000.0 if p95_limit_ms is not None else 0.0)


@dataclass
class Step:
    """One constant-rate stage, counted over a share of the messages (added over shares)."""

    offered: int = 0  # first attempts intended in the window
    in_time: int = 0  # messages intended in it, accepted on time
    delivered: int = 0  # accepted attempts that ended in it
    failed: int = 0  # failed attempts that ended in it
    latency: Slots = field(default_factory=Slots)  # of those delivered
    lateness: Slots = field(default_factory=Slots)  # of those offered


def tally(
    attempts: pd.DataFrame, windows: Sequence[Window], t0: float, p95_limit_ms: float | None
) -> tuple[Step, ...]:
    """Each window's counts in these attempts (every attempt of their messages)."""
    if not windows:  # not a step load: nothing to count
        return ()
    start = attempts["start"].to_numpy(dtype="float64") - t0
    end = attempts["end"].to_numpy(dtype="float64") - t0
    intended = attempts["intended"].to_numpy(dtype="float64") - t0
    is_accepted = (attempts["outcome"] == Outcome.ACCEPTED.value).to_numpy()
    first = (attempts["attempt"] == 1).to_numpy()
    # One acceptance per message (a retried drop can be accepted twice): the earliest.
    accepted = attempts.loc[is_accepted, ["msg_id", "intended", "end"]]
    accepted = accepted.sort_values("end").drop_duplicates("msg_id")
    acc_intended = accepted["intended"].to_numpy(dtype="float64") - t0
    on_time = (accepted["end"].to_numpy(dtype="float64") - t0 - acc_intended) <= on_time_s(
        p95_limit_ms
    )
    out = []
    for w in windows:
        lo, hi = w.start_s, w.start_s + w.duration_s
        ended = (end >= lo) & (end < hi)
        delivered = ended & is_accepted
        offered = first & (intended >= lo) & (intended < hi)
        out.append(
            Step(
                offered=int(offered.sum()),
                in_time=int((on_time & (acc_intended >= lo) & (acc_intended < hi)).sum()),
                delivered=int(delivered.sum()),
                failed=int((ended & ~is_accepted).sum()),
                latency=Slots.of(end[delivered] - start[delivered]),
                lateness=Slots.of(np.clip(start[offered] - intended[offered], 0.0, None)),
            )
        )
    return tuple(out)


def steps(
    counted: Sequence[Step], windows: Sequence[Window], p95_limit_ms: float | None
) -> list[CapacityStep]:
    """Each window's step, from its counts over every share."""
    out = []
    for w, step in zip(windows, counted, strict=True):
        rate = step.in_time / w.duration_s
        ratio = rate / w.rate
        latency = step.latency.percentiles_ms()
        p95 = latency["p95"]
        within = p95_limit_ms is None or (p95 is not None and p95 <= p95_limit_ms)
        out.append(
            CapacityStep(
                stage=w.stage,
                start_s=round(w.start_s, 6),
                duration_s=round(w.duration_s, 6),
                offered_msgs_per_s=round(w.rate, 3),
                offered_measured_msgs_per_s=round(step.offered / w.duration_s, 3),
                accepted_msgs_per_s=round(rate, 3),
                accepted_ratio=round(ratio, 4),
                delivered_msgs_per_s=round(step.delivered / w.duration_s, 3),
                p95_latency_ms=p95,
                p99_latency_ms=latency["p99"],
                p95_lateness_ms=step.lateness.percentiles_ms()["p95"],
                failed_attempts=step.failed,
                within_slo=bool(within),
                stable=bool(ratio >= STABLE_SHARE and within),
            )
        )
    return out


def step_windows(schedule: Schedule | None) -> list[Window]:
    """The windows of a step load (more than one constant-rate stage); none otherwise."""
    windows = constant_windows(schedule) if schedule is not None else []
    return windows if len(windows) >= 2 else []


def capacity(
    attempts: pd.DataFrame, schedule: Schedule | None, t0: float, slo_rules: Sequence[str]
) -> Capacity:
    """summary.json's `capacity` of these attempts, a run's all (`finish`)."""
    windows = step_windows(schedule)
    limit = p95_limit(slo_rules)
    counted = tally(attempts, windows, t0, limit) if not attempts.empty else None
    return finish(counted, windows, slo_rules)


def finish(
    counted: Sequence[Step] | None, windows: Sequence[Window], slo_rules: Sequence[str]
) -> Capacity:
    """summary.json's `capacity`: knee, max stable throughput and the steps, from every
    share's `tally` of `step_windows(schedule)` added (None: no attempt).

    Only a schedule with more than one constant-rate stage is a step load; otherwise the
    values are null and `steps` is empty.
    """
    limit = p95_limit(slo_rules)
    found = steps(counted, windows, limit) if counted is not None and windows else []
    stable = [s.offered_msgs_per_s for s in found if s.stable]
    sustained = [s.delivered_msgs_per_s for s in found if s.within_slo]
    return Capacity(
        knee_msgs_per_s=max(stable) if stable else None,
        max_stable_msgs_per_s=max(sustained) if sustained else None,
        p95_limit_ms=limit,
        stable_share=STABLE_SHARE,
        on_time_s=on_time_s(limit),
        steps=found,
    )
