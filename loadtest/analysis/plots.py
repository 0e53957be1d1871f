"""PNG plots of a run: renderers only, from the tidy series and the Summary.

Matplotlib is used through `Figure` and its Agg canvas, never `pyplot`: no global figure
state, no GUI backend, safe in a process that draws many reports. Every server keeps its
colour in every plot (the order the scenario lists them, or sorted names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loadtest.analysis.capacity import p95_limit
from loadtest.analysis.summary_model import Capacity, Failover, Summary

matplotlib.use("Agg")  # Figure below never touches pyplot; nothing may pick a GUI backend

SERVER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                  "#17becf", "#bcbd22")  # fmt: skip
TOTAL_COLOUR = "#d0d0d0"
OFFERED_COLOUR = "#222222"
FAULT_COLOUR = "#d62728"
FAILOVER_COLOUR = "#2ca02c"
FAILBACK_COLOUR = "#9467bd"
PERCENTILE_STYLES = {"p50": ("#1f77b4", "-"), "p95": ("#ff7f0e", "-"),
                     "p99": ("#d62728", "-"), "max": ("#999999", ":")}  # fmt: skip
CLASS_COLOURS = {
    "4xx": ("#fdae6b", "#e6550d", "#fd8d3c", "#a63603", "#fdd0a2"),
    "5xx": ("#de2d26", "#a50f15", "#fb6a4a", "#67000d", "#fcbba1"),
    "none": ("#636363", "#969696", "#252525", "#bdbdbd", "#525252"),
}
TOP_REPLIES = 8
SIZE = (10.0, 4.8)
DPI = 100


@dataclass(frozen=True)
class Plot:
    name: str  # file stem in plots/
    title: str
    figure: Figure


def colours(servers: Sequence[str]) -> dict[str, str]:
    return {s: SERVER_COLOURS[i % len(SERVER_COLOURS)] for i, s in enumerate(servers)}


def save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    # No Software tag: the PNG depends on the data only.
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _figure(
    rows: int = 1, cols: int = 1, legend_below: bool = False, **kw: Any
) -> tuple[Figure, Any]:
    # Fixed margins (room for the legend right of the axes, or below them) rather than
    # constrained layout: the same look for every run, and a fraction of the drawing time.
    figure = Figure(figsize=SIZE)
    if legend_below:
        figure.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.27, wspace=0.25)
    else:
        figure.subplots_adjust(left=0.07, right=0.74, top=0.93, bottom=0.1, hspace=0.12)
    axes = figure.subplots(rows, cols, squeeze=False, **kw)
    return figure, axes


MOMENTS = ("failover (first accepted elsewhere)", "failback (first accepted again)")
RECEIPT_MOMENTS = ("failover (first receipt elsewhere)", "failback (first receipt again)")


def _mark_faults(
    ax: Axes, failovers: Sequence[Failover], end_s: float, moments: tuple[str, str] = MOMENTS
) -> None:
    """Fault windows shaded, failover and failback moments as vertical lines."""
    labelled: set[str] = set()

    def once(label: str) -> str:
        if label in labelled:
            return "_nolegend_"
        labelled.add(label)
        return label

    for f in failovers:
        onset, cleared = f.onset_s, f.cleared_s
        label = once(text(f"fault: {f.kind} on {f.target}"))
        stop = cleared if cleared is not None else end_s
        ax.axvspan(onset, stop, color=FAULT_COLOUR, alpha=0.12, lw=0, label=label)
        if f.failover_s is not None:
            ax.axvline(onset + f.failover_s, color=FAILOVER_COLOUR, ls="--", lw=1.2,
                       label=once(moments[0]))  # fmt: skip
        if cleared is not None and f.failback_s is not None:
            ax.axvline(cleared + f.failback_s, color=FAILBACK_COLOUR, ls=":", lw=1.5,
                       label=once(moments[1]))  # fmt: skip


def _slo_line(ax: Axes, limit: float | None, values: np.ndarray) -> None:
    """The p95 SLO as a line; far above the data it is named in the legend only."""
    if limit is None:
        return
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if len(finite) else 0.0
    if top and limit > 3 * top:
        ax.plot([], [], color="#000000", ls="-.", lw=1, label=f"p95 SLO {limit:g} ms (off scale)")
    else:
        ax.axhline(limit, color="#000000", ls="-.", lw=1, label=f"p95 SLO {limit:g} ms")


def _log_if_wide(ax: Axes, values: np.ndarray) -> None:
    positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) and positive.max() / max(positive.min(), 1e-9) > 100:
        ax.set_yscale("log")


def _finish(
    ax: Axes, title: str, ylabel: str, xlabel: str = "time since start (s)", below: bool = False
) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    # Outside the axes (right, or below for side-by-side plots): never over the data.
    if below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small",
                  frameon=False)  # fmt: skip
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)  # fmt: skip


def throughput(
    servers: pd.DataFrame,
    offered: pd.DataFrame,
    failovers: Sequence[Failover],
    palette: Mapping[str, str],
) -> Figure:
    """Accepted msgs/s and MB/s per server and in total; offered rate; faults marked."""
    figure, axes = _figure(2, 1, sharex=True, height_ratios=[3, 1.3])
    top, bottom = axes[0][0], axes[1][0]
    end_s = float(servers["second"].max() + 1) if len(servers) else 1.0
    if len(servers):
        # The total underneath, wide and light; each server over it; offered on top.
        if servers["server"].nunique() > 1:
            total = servers.groupby("second")[["accepted", "accepted_mb"]].sum()
            top.step(total.index, total["accepted"], where="post", color=TOTAL_COLOUR, lw=4,
                     label="total")  # fmt: skip
            bottom.step(total.index, total["accepted_mb"], where="post", color=TOTAL_COLOUR,
                        lw=4)  # fmt: skip
        for name in _ordered(servers["server"].unique(), palette):
            mine = servers[servers["server"] == name]
            colour = palette.get(name, SERVER_COLOURS[0])
            top.step(mine["second"], mine["accepted"], where="post", color=colour, lw=1.6,
                     label=text(name))  # fmt: skip
            bottom.step(mine["second"], mine["accepted_mb"], where="post", color=colour, lw=1.4)
    if len(offered):
        top.step(offered["second"], offered["count"], where="post", color=OFFERED_COLOUR,
                 ls="--", lw=1.0, label="offered")  # fmt: skip
    _mark_faults(top, failovers, end_s)
    _mark_faults(bottom, failovers, end_s)
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    _finish(top, "Accepted messages per second, per server", "msgs/s", xlabel="")
    _finish(bottom, "", "MB/s (10^6 bytes)")
    if bottom.get_legend() is not None:
        bottom.get_legend().remove()
    return figure


def received(
    frame: pd.DataFrame, failovers: Sequence[Failover], palette: Mapping[str, str]
) -> Figure:
    """Receipts per second per server and in total (no sender's journal); faults marked."""
    figure, axes = _figure()
    ax = axes[0][0]
    end_s = float(frame["second"].max() + 1) if len(frame) else 1.0
    if len(frame):
        # Each second a bin of its own, the last one included (a series covers every
        # second for every server).
        total = frame.groupby("second")["received"].sum()
        edges = np.r_[total.index.to_numpy(), total.index[-1] + 1]
        if frame["server"].nunique() > 1:
            ax.stairs(total.to_numpy(), edges, color=TOTAL_COLOUR, lw=4, label="total")
        for name in _ordered(frame["server"].unique(), palette):
            mine = frame[frame["server"] == name].sort_values("second")
            colour = palette.get(name, SERVER_COLOURS[0])
            ax.stairs(mine["received"].to_numpy(), edges, color=colour, lw=1.6, label=text(name))
    _mark_faults(ax, failovers, end_s, RECEIPT_MOMENTS)
    ax.set_ylim(bottom=0)
    _finish(ax, "Receipts per second, per server (the sinks' journals)", "msgs/s")
    return figure


def received_plots(
    frames: Mapping[str, pd.DataFrame], summary: Summary, servers: Sequence[str]
) -> list[Plot]:
    """The plots of a run without the sender's journal: the receipts alone."""
    with matplotlib.rc_context({"text.parse_math": False}):
        figure = received(frames["received"], summary.failovers, colours(servers))
    return [Plot("received", "Receipts per server", figure)]


def _ordered(names: Any, palette: Mapping[str, str]) -> list[str]:
    order = list(palette)
    return sorted((str(n) for n in names), key=lambda n: (order.index(n) if n in order else 99, n))


def latency(
    frame: pd.DataFrame,
    failovers: Sequence[Failover],
    palette: Mapping[str, str],
    p95_limit_ms: float | None,
) -> Figure:
    """Latency percentiles of accepted attempts per second, all servers; p95 per server."""
    figure, axes = _figure()
    ax = axes[0][0]
    overall = frame[frame["server"] == "all"]
    end_s = float(frame["second"].max() + 1) if len(frame) else 1.0
    for column, (colour, style) in PERCENTILE_STYLES.items():
        if len(overall):
            ax.plot(overall["second"] + 0.5, overall[column], color=colour, ls=style, lw=1.5,
                    marker=".", ms=3, label=f"{column} (all servers)")  # fmt: skip
    per = frame[frame["server"] != "all"]
    if per["server"].nunique() > 1:
        for name in _ordered(per["server"].unique(), palette):
            mine = per[per["server"] == name]
            ax.plot(mine["second"] + 0.5, mine["p95"], color=palette.get(name, SERVER_COLOURS[0]),
                    ls="--", lw=0.9, alpha=0.8, label=text(f"p95 {name}"))  # fmt: skip
    _mark_faults(ax, failovers, end_s)
    values = frame[["p50", "max"]].to_numpy(dtype="float64").ravel()
    _log_if_wide(ax, values)
    _slo_line(ax, p95_limit_ms, values)
    _finish(ax, "Latency of accepted attempts (end - start), per second", "ms")
    return figure


def replies(frame: pd.DataFrame, failovers: Sequence[Failover]) -> Figure:
    """Non-2xx replies (and attempts with no reply) per second, stacked by reply."""
    figure, axes = _figure()
    ax = axes[0][0]
    bad = frame[frame["class"] != "2xx"] if len(frame) else frame
    end_s = float(frame["second"].max() + 1) if len(frame) else 1.0
    if bad.empty:
        ax.text(0.5, 0.5, "every attempt got a 2xx reply", transform=ax.transAxes,
                ha="center", va="center", fontsize="large", color="#555555")  # fmt: skip
    else:
        totals = bad.groupby("reply")["count"].sum().sort_values(ascending=False)
        keep = list(totals.index[:TOP_REPLIES])
        labels = bad["reply"].where(bad["reply"].isin(keep), "other")
        table = (
            bad.assign(reply=labels)
            .pivot_table(index="second", columns="reply", values="count", aggfunc="sum")
            .reindex(np.arange(int(frame["second"].min()), int(end_s)))
            .fillna(0)
        )
        order = [k for k in keep if k in table.columns] + (
            ["other"] if "other" in table.columns else []
        )
        classes = bad.drop_duplicates("reply").set_index("reply")["class"]
        used: dict[str, int] = {}
        bottom = np.zeros(len(table))
        for reply in order:
            cls = str(classes.get(reply, "none"))
            shades = CLASS_COLOURS.get(cls, CLASS_COLOURS["none"])
            colour = shades[used.get(cls, 0) % len(shades)]
            used[cls] = used.get(cls, 0) + 1
            top = bottom + table[reply].to_numpy()
            edges = np.r_[table.index.to_numpy(), table.index[-1] + 1]
            # One filled staircase per reply: a patch per reply, not one per second.
            ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=reply, lw=0)
            bottom = top
    _mark_faults(ax, failovers, end_s)
    _finish(ax, "Failed attempts per second by reply (code and enhanced code)", "attempts/s")
    return figure


def lateness(frame: pd.DataFrame, failovers: Sequence[Failover]) -> Figure:
    """How far first attempts started after their intended time, per intended second."""
    figure, axes = _figure()
    ax = axes[0][0]
    end_s = float(frame["second"].max() + 1) if len(frame) else 1.0
    for column, (colour, style) in PERCENTILE_STYLES.items():
        if len(frame):
            ax.plot(frame["second"] + 0.5, frame[column], color=colour, ls=style, lw=1.5,
                    marker=".", ms=3, label=column)  # fmt: skip
    _mark_faults(ax, failovers, end_s)
    if len(frame):
        _log_if_wide(ax, frame[["p50", "max"]].to_numpy(dtype="float64").ravel())
    _finish(ax, "Lateness of first attempts (start - intended), by intended second", "ms")
    return figure


def capacity(cap: Capacity) -> Figure:
    """Step load: accepted and delivered rate, and p95 latency, against the offered rate."""
    figure, axes = _figure(1, 2, legend_below=True)
    left, right = axes[0][0], axes[0][1]
    steps = pd.DataFrame([s.model_dump() for s in cap.steps]).sort_values("offered_msgs_per_s")
    offered = steps["offered_msgs_per_s"].to_numpy(dtype="float64")
    top = float(max(offered.max(), steps["delivered_msgs_per_s"].max()) * 1.08)
    left.plot([0, top], [0, top], color=OFFERED_COLOUR, ls="--", lw=1, label="accepted = offered")
    left.plot(offered, steps["accepted_msgs_per_s"], color=SERVER_COLOURS[0], marker="o",
              label="accepted on time")  # fmt: skip
    left.plot(offered, steps["delivered_msgs_per_s"], color=SERVER_COLOURS[1], marker="s",
              ls=":", label="delivered in the step")  # fmt: skip
    unstable = steps[~steps["stable"].astype(bool)]
    if len(unstable):
        left.scatter(unstable["offered_msgs_per_s"], unstable["accepted_msgs_per_s"], s=90,
                     facecolors="none", edgecolors=FAULT_COLOUR, label="not stable",
                     zorder=3)  # fmt: skip
    p95 = steps["p95_latency_ms"].to_numpy(dtype="float64")
    right.plot(offered, p95, color=PERCENTILE_STYLES["p95"][0], marker="o", label="p95 latency")
    _slo_line(right, cap.p95_limit_ms, p95)
    knee = cap.knee_msgs_per_s
    for ax in (left, right):
        if knee is not None:
            ax.axvline(knee, color=FAILOVER_COLOUR, lw=1.5, label=f"knee {knee:g} msgs/s")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    _finish(left, "Throughput against offered rate", "msgs/s", "offered (msgs/s)", below=True)
    _finish(right, "p95 latency against offered rate", "ms", "offered (msgs/s)", below=True)
    return figure


def all_plots(
    frames: Mapping[str, pd.DataFrame], summary: Summary, servers: Sequence[str]
) -> list[Plot]:
    """Every plot a report shows, in order. Names come from the journals: `$` in one
    would start matplotlib's math syntax (and a bad formula raises), so it is off."""
    with matplotlib.rc_context({"text.parse_math": False}):
        return _all_plots(frames, summary, servers)


def text(label: str) -> str:
    """A name as a label: control characters (no glyph, a warning each) as spaces."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in label)


def _all_plots(
    frames: Mapping[str, pd.DataFrame], summary: Summary, servers: Sequence[str]
) -> list[Plot]:
    palette = colours(servers)
    failovers = summary.failovers
    limit = p95_limit([c.rule for c in summary.slo.checks])
    out = [
        Plot("throughput", "Throughput per server",
             throughput(frames["servers"], frames["lateness"], failovers, palette)),
        Plot("latency", "Latency percentiles",
             latency(frames["latency"], failovers, palette, limit)),
        Plot("replies", "Replies other than 2xx", replies(frames["replies"], failovers)),
        Plot("lateness", "Lateness", lateness(frames["lateness"], failovers)),
    ]  # fmt: skip
    if summary.capacity.steps:
        out.append(Plot("capacity", "Capacity: step load", capacity(summary.capacity)))
    return out
