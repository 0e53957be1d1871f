"""capacity.md and plots/capacity.png: the curves of a capacity run, from capacity.json alone.

One chart, the curves of every server (and `all`) on it: delivered rate (solid) and
accepted-on-time rate (dotted) against the offered rate, the line accepted = offered, the
unstable steps ringed and each curve's knee marked with a vertical line in its colour; on
the right, p95 latency against the offered rate, with the bound when there is one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

# The report's own plot helpers (figure size, margins, legend placement, the SLO line), so
# this chart looks like the run report's capacity plot.
from loadtest.analysis.plots import (
    FAULT_COLOUR,
    OFFERED_COLOUR,
    SERVER_COLOURS,
    _figure,
    _finish,
    _slo_line,
    save,
    text,
)
from loadtest.capacity.harness import harness_line
from loadtest.capacity.model import CapacityReport, Curve, CurveStep
from loadtest.capacity.search import Ending

ENDINGS = {
    "converged": "found within {precision:.0%}",
    "max_rate": "stable at the highest rate allowed ({max_rate:g} msgs/s): raise --max-rate",
    "min_rate": "unstable down to the lowest rate allowed ({min_rate:g} msgs/s)",
    "max_steps": "out of steps ({max_steps}) before the knee was found within {precision:.0%}",
}


PARTIAL = ["**Partial: interrupted; the last curve is unfinished.**", ""]


def _n(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


HARNESS = "the load generator, not the server, limited {what}: the knee is at least {knee}"


def ending(report: CapacityReport, curve: Curve) -> str:
    if curve.ending is Ending.HARNESS_BOUND:
        rate = _n(curve.harness_bound_msgs_per_s, " msgs/s")
        return HARNESS.format(what=f"the step at {rate}", knee=_n(curve.knee_msgs_per_s))
    return ENDINGS[curve.ending.value].format(**report.settings.model_dump())


def step_verdict(curve: Curve, st: CurveStep) -> str:
    """A step's verdict in words; a harness-bound one says the server was not measured."""
    verdict = "stable" if st.stable else f"{st.failure}: {st.why}"
    if st.harness_bound is None:
        return verdict
    if st.stable:
        return f"{verdict}; harness_bound: {st.harness_bound}"
    knee = HARNESS.format(what="this step", knee=_n(curve.knee_msgs_per_s))
    return f"**harness_bound** ({st.harness_bound}): {knee} ({verdict})"


def markdown(report: CapacityReport) -> str:
    s, r = report.settings, report.rule
    bound = f", p95 latency <= {r.p95_limit_ms:g} ms" if r.p95_limit_ms is not None else ""
    lines = [
        f"# Capacity: {report.scenario}",
        "",
        *(PARTIAL if report.partial else []),
        f"Steps of {s.step_s:g} s, from {s.start_rate:g} msgs/s, x{s.factor:g} until a step "
        f"is unstable, then halved to within {s.precision:.0%} (at most {s.max_steps} steps, "
        f"{s.max_rate:g} msgs/s). Stable: accepted on time (within {r.on_time_s:g} s) >= "
        f"{r.min_accepted_share:.0%} of offered, backlog growing by at most "
        f"{r.max_backlog_growth:.0%} of the offered rate per second{bound}.",
        "",
        "| curve | servers | knee (msgs/s) | first unstable | max stable delivered "
        "| past the knee | search |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report.curves:
        lines.append(
            f"| {c.name} | {', '.join(c.servers)} | {_n(c.knee_msgs_per_s)} "
            f"| {_n(c.first_unstable_msgs_per_s)} | {_n(c.max_stable_msgs_per_s)} "
            f"| {c.failure or 'n/a'} | {ending(report, c)} ({len(c.steps)} steps) |"
        )
    for c in report.curves:
        lines += [
            "",
            f"## {c.name}",
            "",
            "| offered | accepted | delivered | backlog growth | p95 latency ms "
            "| p95 response ms | refused | timeouts | 4xx | 5xx | busy conns | harness "
            "| verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for st in c.steps:
            lines.append(
                f"| {st.rate:g} | {st.accepted_msgs_per_s:g} | {st.delivered_msgs_per_s:g} "
                f"| {st.backlog_growth_msgs_per_s:g} | {_n(st.p95_latency_ms)} "
                f"| {_n(st.p95_response_ms)} | {st.refused_share:.1%} "
                f"| {st.timeout_share:.1%} | {st.throttled_share:.1%} | {st.rejected_share:.1%} "
                f"| {_n(st.busy_connections)} of {_n(st.connections)} "
                f"| {harness_line(st).removeprefix('harness: ')} | {step_verdict(c, st)} |"
            )
    lines += ["", "![capacity curves](plots/capacity.png)", ""]
    return "\n".join(lines)


def figure(report: CapacityReport) -> Figure:
    fig, axes = _figure(1, 2, legend_below=True)
    left, right = axes[0][0], axes[0][1]
    top = 1.0
    for i, c in enumerate(report.curves):
        colour = SERVER_COLOURS[i % len(SERVER_COLOURS)]
        steps = sorted(c.steps, key=lambda st: st.rate)
        if not steps:
            continue
        offered = [st.rate for st in steps]
        top = max(top, *offered, *(st.delivered_msgs_per_s for st in steps))
        name = text(c.name)
        left.plot(offered, [st.delivered_msgs_per_s for st in steps], color=colour, marker="o",
                  label=f"{name}: delivered")  # fmt: skip
        left.plot(offered, [st.accepted_msgs_per_s for st in steps], color=colour, ls=":",
                  marker=".", label=f"{name}: accepted on time")  # fmt: skip
        unstable = [st for st in steps if not st.stable]
        if unstable:
            left.scatter([st.rate for st in unstable],
                         [st.delivered_msgs_per_s for st in unstable], s=90, facecolors="none",
                         edgecolors=FAULT_COLOUR, zorder=3)  # fmt: skip
        right.plot(offered, [st.p95_latency_ms or 0.0 for st in steps], color=colour,
                   marker="o", label=f"{name}: p95 latency")  # fmt: skip
        if c.knee_msgs_per_s is not None:
            for ax in (left, right):
                ax.axvline(
                    c.knee_msgs_per_s,
                    color=colour,
                    lw=1.2,
                    ls="--",
                    label=f"{name}: knee {c.knee_msgs_per_s:g}" if ax is left else None,
                )
    left.plot([0, top * 1.05], [0, top * 1.05], color=OFFERED_COLOUR, ls="--", lw=1,
              label="accepted = offered")  # fmt: skip
    latencies = [st.p95_latency_ms or 0.0 for c in report.curves for st in c.steps]
    _slo_line(right, report.rule.p95_limit_ms, np.asarray(latencies, dtype="float64"))
    for ax in (left, right):
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    _finish(left, "Throughput against offered rate (unstable steps ringed)", "msgs/s",
            "offered (msgs/s)", below=True)  # fmt: skip
    _finish(right, "p95 latency against offered rate", "ms", "offered (msgs/s)", below=True)
    return fig


def write(out_dir: Path, report: CapacityReport) -> None:
    """capacity.json, capacity.md and plots/capacity.png in `out_dir`."""
    (out_dir / "capacity.json").write_text(report.model_dump_json(indent=2) + "\n")
    (out_dir / "plots").mkdir(exist_ok=True)
    with matplotlib.rc_context({"text.parse_math": False}):
        save(figure(report), out_dir / "plots" / "capacity.png")
    (out_dir / "capacity.md").write_text(markdown(report))
