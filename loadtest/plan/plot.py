"""plan.png: offered vs deliverable rate over time, and the backlog (per priority) under it.

A renderer only, as loadtest.analysis.plots: Matplotlib's `Figure` on the Agg canvas, never
pyplot. A long plan is drawn from at most `POINTS` points (`series.thinned`), so drawing stays
quick whatever the step count.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from loadtest.analysis.plots import DPI, FAULT_COLOUR, OFFERED_COLOUR, SERVER_COLOURS, save
from loadtest.plan import series
from loadtest.plan.evaluate import Answer

POINTS = 4000


def draw(a: Answer, path: Path) -> Path:
    s = series.thinned(a, POINTS)
    scale, unit = (3600.0, "h") if s.t_s[-1] > 3 * 3600 else (60.0, "min")
    x = s.t_s / scale
    fig = Figure(figsize=(10.0, 6.4))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, s.offered_msgs_per_s, color=OFFERED_COLOUR, label="offered")
    top.plot(x, s.deliverable_msgs_per_s, color=SERVER_COLOURS[0], label="deliverable",
             drawstyle="steps-pre")  # fmt: skip
    top.set_ylabel("msgs/s")
    top.set_ylim(bottom=0)
    order = sorted(a.question.groups, key=lambda g: -g.priority)
    labels = [", ".join(n for n, _ in g.streams) + f" (priority {g.priority})" for g in order]
    colours = [SERVER_COLOURS[(i + 1) % len(SERVER_COLOURS)] for i in range(len(order))]
    bottom.stackplot(x, *s.backlogs, labels=labels, colors=colours, alpha=0.8)
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
