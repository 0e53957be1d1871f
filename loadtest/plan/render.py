"""plan.md and the lines `maildrill plan` prints: from plan.json's model alone."""

from __future__ import annotations

from loadtest.analysis.render_md import cell
from loadtest.plan.result import Extra, Plan


def _t(seconds: float | None) -> str:
    """Seconds as h:mm:ss (and the seconds), or "never"."""
    if seconds is None:
        return "never"
    whole = abs(round(seconds))
    sign = "-" if round(seconds) < 0 else ""
    return f"{sign}{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d} ({seconds:g} s)"


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def verdict(p: Plan) -> str:
    if p.met:
        return "MET: every message delivered by the deadline, with the headroom asked for"
    missed = [what for what, ok in (("deadline", p.deadline_met), ("headroom", p.headroom_met))
              if not ok]  # fmt: skip
    return f"MISSED: {' and '.join(missed)}"


def lines(p: Plan) -> list[str]:
    """The printed summary: verdict, the backlog, the streams, what would meet it."""
    out = [
        f"plan: {_n(p.messages)} messages over {_t(p.window_s)}, peak "
        f"{_n(p.peak_offered_msgs_per_s)} msgs/s at {_t(p.peak_offered_at_s)}",
    ]
    if p.outage:
        o = p.outage
        carries = (
            "carry" if o.deliverable_msgs_per_s >= o.peak_offered_msgs_per_s else "cannot carry"
        )
        out.append(
            f"outage: {o.server} gone at {_t(o.at_s)} for {o.duration_s:g} s"
            f" (failover {p.failover.failover_s:g} s, failback {p.failover.failback_s:g} s): "
            f"the servers left {carries} it, {_n(o.deliverable_msgs_per_s)} msgs/s against up "
            f"to {_n(o.peak_offered_msgs_per_s)} offered"
        )
    out.append(
        f"backlog: peak {_n(p.peak_backlog)} messages at {_t(p.peak_backlog_at_s)}, "
        f"drained at {_t(p.drained_at_s) if p.peak_backlog > 0.5 else 'n/a (none)'}; "
        f"last message delivered at {_t(p.completion_s)}, deadline {_t(p.deadline_s)}"
    )
    for name, s in p.streams.items():
        late = s.lateness_s
        out.append(f"stream {name} (priority {s.priority}): lateness p50 {late.p50} s, "
                   f"p95 {late.p95} s, p99 {late.p99} s, max {late.max} s")  # fmt: skip
    for name, srv in p.servers.items():
        out.append(f"server {name}: {_n(srv.capacity_msgs_per_s)} msgs/s, carries "
                   f"{_n(srv.carried_at_peak_msgs_per_s)} at the peak: headroom "
                   f"{srv.headroom:.0%} (target {p.headroom_target:.0%})")  # fmt: skip
    if p.extra is not None:
        e = p.extra
        if e.msgs_per_s is None:
            out.append(f"no added capacity meets it: {e.why}")
        else:
            kinds = " or ".join(f"{n} more like {k}" for k, n in e.servers.items())
            out.append(f"to meet it: {_n(e.msgs_per_s)} msgs/s more ({kinds}); "
                       f"then the last message is delivered at {_t(e.completion_s)}")  # fmt: skip
    out.append(verdict(p))
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _overview(p: Plan) -> list[list[str]]:
    window = _t(p.window_s) + (f", from {p.start.isoformat()}" if p.start else "")
    o = p.outage
    outage = (
        f"{cell(o.server)} at {_t(o.at_s)} for {o.duration_s:g} s: the servers left deliver "
        f"{_n(o.deliverable_msgs_per_s)} msgs/s against up to {_n(o.peak_offered_msgs_per_s)} "
        "offered"
        if o
        else "none"
    )
    f = p.failover
    timings = (f"detection {f.detection_s:g} s, failover {f.failover_s:g} s, "
               f"failback {f.failback_s:g} s ({cell(f.source)})")  # fmt: skip
    deadline = f"{_t(p.deadline_s)}: {'met' if p.deadline_met else 'MISSED'}"
    return [
        ["messages", f"{_n(p.messages)} ({cell(p.shape)})"],
        ["window", window],
        ["peak offered", f"{_n(p.peak_offered_msgs_per_s)} msgs/s at {_t(p.peak_offered_at_s)}"],
        ["routing", p.routing],
        ["outage", outage],
        ["failover timings", timings],
        ["peak backlog", f"{_n(p.peak_backlog)} messages at {_t(p.peak_backlog_at_s)}"],
        ["backlog drained", _t(p.drained_at_s) if p.peak_backlog > 0.5 else "n/a (none)"],
        ["last message delivered", _t(p.completion_s)],
        ["deadline", deadline],
        ["model step", f"{p.step_s:g} s"],
    ]


def _extra(e: Extra) -> str:
    if e.msgs_per_s is None:
        return f"No added capacity: {cell(e.why)}"
    kinds = " or ".join(f"{n} more like {cell(k)}" for k, n in e.servers.items())
    return (f"{_n(e.msgs_per_s)} msgs/s more, pooled and up throughout ({kinds}). The last "
            f"message would then be delivered at {_t(e.completion_s)}.")  # fmt: skip


def markdown(p: Plan, plot_name: str) -> str:
    servers = [
        [cell(n), _n(s.capacity_msgs_per_s), _n(s.carried_at_peak_msgs_per_s),
         f"{s.headroom:.1%}", cell(s.source)]
        for n, s in p.servers.items()
    ]  # fmt: skip
    streams = [
        [cell(n), f"{s.share:g}", str(s.priority), _t(s.completion_s), str(s.lateness_s.p50),
         str(s.lateness_s.p95), str(s.lateness_s.p99), str(s.lateness_s.max)]
        for n, s in p.streams.items()
    ]  # fmt: skip
    rows = [
        "# Campaign plan",
        "",
        f"**{verdict(p)}**",
        "",
        f"![offered vs deliverable rate, backlog]({plot_name})",
        "",
        *_table(["figure", "value"], _overview(p)),
        "## Deliverable rate",
        "",
        *_table(["from", "msgs/s"], [[_t(x.from_s), _n(x.msgs_per_s)] for x in p.deliverable]),
        "## Servers at the peak (every server up)",
        "",
        *_table(["server", "capacity msgs/s", "carries msgs/s", "headroom", "source"], servers),
        f"Headroom target {p.headroom_target:.0%}: {'met' if p.headroom_met else 'MISSED'}.",
        "",
        "## Streams",
        "",
        *_table(
            [
                "stream",
                "share",
                "priority",
                "last delivered",
                "lateness p50 s",
                "p95 s",
                "p99 s",
                "max s",
            ],
            streams,
        ),
    ]
    if p.extra is not None:
        rows += ["## What would meet it", "", _extra(p.extra), ""]
    return "\n".join(rows) + "\n"
