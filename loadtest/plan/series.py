"""The plan over time, thinned to at most so many points: what plan.png draws and
plan-series.csv holds (so a drill's own series can be laid beside it).

Each point is a stretch of k model steps: the offered and deliverable rates are its means,
the backlogs their values at its end (the last stretch may be shorter).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest.plan import fluid
from loadtest.plan.evaluate import Answer

CSV_POINTS = 10_000


@dataclass(frozen=True)
class Series:
    t_s: fluid.Array  # each stretch's end, seconds from the campaign's start
    offered_msgs_per_s: fluid.Array
    deliverable_msgs_per_s: fluid.Array
    backlogs: tuple[fluid.Array, ...]  # per priority group, highest first
    groups: tuple[str, ...]  # each group's streams, joined by "+"


def thinned(a: Answer, points: int) -> Series:
    f = a.flow
    steps = len(f.offered)
    k = max(1, int(np.ceil(steps / points)))
    starts = np.arange(0, steps, k)
    ends = np.minimum(starts + k, steps)
    seconds = (ends - starts) * f.step_s
    order = sorted(a.question.groups, key=lambda g: -g.priority)  # as flow() served them
    return Series(
        t_s=f.t[ends],
        offered_msgs_per_s=np.add.reduceat(f.offered, starts) / seconds,
        deliverable_msgs_per_s=np.add.reduceat(f.capacity, starts) / seconds,
        backlogs=tuple(b[ends] for b in f.backlog),
        groups=tuple("+".join(name for name, _ in g.streams) for g in order),
    )


def write_csv(a: Answer, path: Path) -> Path:
    """t_s, offered_msgs_per_s, deliverable_msgs_per_s, backlog, then backlog_GROUP each."""
    s = thinned(a, CSV_POINTS)
    total = np.sum(s.backlogs, axis=0)
    with path.open("w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(["t_s", "offered_msgs_per_s", "deliverable_msgs_per_s", "backlog"]
                   + [f"backlog_{g}" for g in s.groups])  # fmt: skip
        for i in range(len(s.t_s)):
            w.writerow([f"{s.t_s[i]:g}", f"{s.offered_msgs_per_s[i]:.6g}",
                        f"{s.deliverable_msgs_per_s[i]:.6g}", f"{total[i]:.1f}",
                        *(f"{b[i]:.1f}" for b in s.backlogs)])  # fmt: skip
    return path
