"""The lowest rolling throughput inside constant-rate stages: what `min_throughput` means.

A mean over the whole run (throughput.mean_msgs_per_s) hides a stall: ten seconds of
nothing inside a minute at full rate still averages 80%, and ramps pull it down however
well the servers did. The floor a campaign needs is the fewest messages accepted in any
short window while the offered rate held still, so:

- the windows are WIDTH_S (5 s) long, `[t, t + 5)`, and lie wholly inside one stage of
  constant, non-zero rate (a ramp, `to_rate`, or a pause, `rate: 0`, offers a rate that is
  not a target; `capacity.constant_windows` finds the stages);
- every position `t` counts, not only whole seconds: the count in a window changes only
  when a message leaves it, so the minimum is at the stage's start or just after an
  accepted message, and those are the only places looked at (exact, O(n log n));
- a message counts by the `end` of its accepted attempt, as every throughput figure
  (docs/metrics.md, Throughput): accepted, not attempted, for a server that refuses
  everything quickly is not carrying the load.

No stage of constant rate at least WIDTH_S long: no value (the SLO is then not measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from loadtest.analysis.capacity import Window

WIDTH_S = 5.0


@dataclass(frozen=True)
class Floor:
    """The lowest window: its rate (msgs/s) and where it starts (seconds from t0)."""

    msgs_per_s: float
    at_s: float


def lowest_window(
    ends: np.ndarray, stages: Sequence[Window], t0: float, width_s: float = WIDTH_S
) -> Floor | None:
    """The fewest `ends` (epoch seconds) in any `[t, t + width_s)` inside one of `stages`,
    per second; None when no stage is `width_s` long."""
    times = np.sort(np.asarray(ends, dtype="float64"))
    best: Floor | None = None
    for stage in stages:
        if stage.duration_s < width_s:
            continue
        start = t0 + stage.start_s
        last = start + stage.duration_s - width_s  # the latest start of a window
        # Window starts to look at: the stage's start, and just after each message that
        # ends before the latest start (the window [e+, e+w] then holds (e, e + w]).
        inside = times[(times >= start) & (times < last)]
        counts = np.concatenate(
            (
                [np.searchsorted(times, start + width_s, "left")
                 - np.searchsorted(times, start, "left")],
                np.searchsorted(times, inside + width_s, "right")
                - np.searchsorted(times, inside, "right"),
            )
        )  # fmt: skip
        positions = np.concatenate(([start], inside))
        i = int(np.argmin(counts))  # the first of the lowest: the earliest window
        floor = Floor(round(float(counts[i]) / width_s, 3), round(float(positions[i] - t0), 3))
        if best is None or floor.msgs_per_s < best.msgs_per_s:
            best = floor
    return best


def clip(stages: Sequence[Window], end_s: float) -> list[Window]:
    """The stages cut at `end_s` (seconds from t0), where an interrupted run stopped
    sending; a stage that had not begun by then is left out."""
    return [
        replace(stage, duration_s=min(stage.duration_s, end_s - stage.start_s))
        for stage in stages
        if stage.start_s < end_s
    ]
