"""plan.png: offered vs deliverable rate over time, and the backlog (per priority) under it.

A renderer only, as loadtest.analysis.plots: Matplotlib's `Figure` on the Agg canvas, never
pyplot. A long plan is drawn from at most `POINTS` steps (each the mean of its stretch for
rates, the last value for backlogs), so drawing stays quick whatever the step count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from loadtest.analysis.plots import DPI, FAULT_COLOUR, OFFERED_COLOUR, SERVER_COLOURS, save
from loadtest.plan import fluid
from loadtest.plan.evaluate import Answer

POINTS = 4000


def _thin(
    t: fluid.Array, per_step: fluid.Array, levels: list[fluid.Array]
) -> tuple[fluid.Array, fluid.Array, list[fluid.Array]]:
    """Every k-th step: rates averaged over the k steps, levels sampled at their ends."""
    k = max(1, int(np.ceil(len(per_step) / POINTS)))
    n = len(per_step) // k * k
    rates = per_step[:n].reshape(-1, k).mean(axis=1)
    ends = t[k : n + 1 : k]
    return ends, rates, [lv[k : n + 1 : k] for lv in levels]


def draw(a: Answer, path: Path) -> Path:
    f = a.flow
    step = f.step_s
    scale, unit = (3600.0, "h") if f.t[-1] > 3 * 3600 else (60.0, "min")
    ends, offered, backlogs = _thin(f.t, f.offered / step, list(f.backlog))
    _, deliverable, _ = _thin(f.t, f.capacity / step, [])
    x = ends / scale
    fig = Figure(figsize=(10.0, 6.4))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, offered, color=OFFERED_COLOUR, label="offered")
    top.plot(x, deliverable, color=SERVER_COLOURS[0], label="deliverable", drawstyle="steps-pre")
    top.set_ylabel("msgs/s")
    top.set_ylim(bottom=0)
    order = sorted(a.question.groups, key=lambda g: -g.priority)
    labels = [", ".join(n for n, _ in g.streams) + f" (priority {g.priority})" for g in order]
    colours = [SERVER_COLOURS[(i + 1) % len(SERVER_COLOURS)] for i in range(len(order))]
    bottom.stackplot(x, *backlogs, labels=labels, colors=colours, alpha=0.8)
    bottom.set_ylabel("backlog (messages)")
    bottom.set_xlabel(f"time from the campaign's start ({unit})")
    o = a.question.outage
    for ax in (top, bottom):
        if o is not None:
            ax.axvspan(o.at_s / scale, (o.at_s + o.duration_s) / scale, color=FAULT_COLOUR,
                       alpha=0.12, label=f"{o.server} out" if ax is top else None)  # fmt: skip
        ax.axvline(a.question.deadline_s / scale, color=FAULT_COLOUR, linestyle="--",
                   label="deadline" if ax is top else None)  # fmt: skip
        ax.grid(alpha=0.3)
    top.legend(loc="best", fontsize="small")
    bottom.legend(loc="best", fontsize="small")
    top.set_title("offered vs deliverable rate; backlog")
    fig.tight_layout()
    fig.set_dpi(DPI)
    return save(fig, path)
