"""What a report shows, as plain tables of strings, from the Summary alone.

Both renderers (HTML and Markdown) lay out this one view, so they say the same thing and
every number they print is a value of the Summary (summary.json), formatted here and
nowhere else. A new metric in the model shows under "More results" until a table here
lays it out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.analysis.summary_model import (
    AUTH_UNKNOWN_SERVER,
    AuthCounts,
    Capacity,
    Percentiles,
    Summary,
)

MISSING = "n/a"


@dataclass(frozen=True)
class Table:
    title: str
    anchor: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    empty: str = "none"  # shown instead of the table when there are no rows


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass", "fail", "partial" or "none"
    headline: str  # e.g. "SLOs PASSED"
    detail: str


@dataclass(frozen=True)
class PlotRef:
    name: str
    title: str
    path: str  # relative to the run directory, e.g. plots/throughput.png


@dataclass(frozen=True)
class ReportView:
    title: str
    facts: list[tuple[str, str]]  # run id, started, duration, ...
    verdict: Verdict
    sections: list[Table]
    plots: list[PlotRef] = field(default_factory=list)
    scenario_text: str = ""
    # Shown right under the verdict, before any table (the others go under "Plots").
    lead_plot: PlotRef | None = None
    lead_caption: str = ""


def num(value: Any, digits: int = 3) -> str:
    """A number as the report prints it: ints as they are, floats to `digits` places with
    trailing zeros dropped; None as n/a."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return MISSING
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(value)


def exact(value: Any) -> str:
    """A number as measured (summary.json keeps up to 6 places), where a verdict turns on
    it: at a limit of 5, 5.0004 must not read as 5."""
    return num(value, 6)


def percent(ratio: Any) -> str:
    return MISSING if ratio is None else f"{num(ratio * 100.0, 2)} %"


def when(epoch: Any) -> str:
    if not epoch:
        return MISSING
    moment = dt.datetime.fromtimestamp(float(epoch), dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def verdict(summary: Summary) -> Verdict:
    slo = summary.slo
    checks = slo.checks
    passed = sum(1 for c in checks if c.passed)
    outcome = "PASSED" if slo.passed else "FAILED"
    tally = f"{passed} of {len(checks)} SLOs passed"
    harness = summary.harness
    if harness.aborted_by:
        return Verdict("fail", "RUN FAILED", f"{harness.aborted_by}; the run was stopped "
                       "and the SLOs are not judged.")  # fmt: skip
    if summary.partial:
        why = harness.interrupted_by
        cause = f"interrupted by {why}" if why else "interrupted or never started"
        on = f"SLOs {outcome} on partial data ({tally})" if checks else "no SLOs set"
        return Verdict("partial", "PARTIAL RUN", f"The run was {cause}: {on}.")
    if not checks:
        return Verdict("none", "NO SLOs", "The scenario sets no SLOs; nothing to pass or fail.")
    failed = [c.rule for c in checks if not c.passed]
    detail = tally + (f"; failed: {', '.join(failed)}" if failed else "")
    return Verdict("pass" if slo.passed else "fail", f"SLOs {outcome}", detail + ".")


def facts(summary: Summary) -> list[tuple[str, str]]:
    return [
        ("scenario", summary.scenario or MISSING),
        ("run id", summary.run_id or MISSING),
        ("started", when(summary.started_at)),
        ("duration", f"{num(summary.duration_s)} s"),
    ]


def key_numbers(summary: Summary) -> Table:
    m = summary.messages
    tp = summary.throughput
    lat = summary.latency_ms
    rows = [
        ["accepted", f"{num(m.accepted)} of {num(m.planned)} planned"],
        ["failed", num(m.failed)],
        ["lost / duplicates / phantom", f"{num(m.lost)} / {num(m.duplicates)} / {num(m.phantom)}"],
        *([["unverified (servers maildrill does not see past)", num(m.unverified)]]
          if m.unverified else []),
        *([["refused downstream (5xx further on: bounced to the sender)",
             num(m.refused_downstream)]] if m.refused_downstream else []),
        ["throughput mean / peak",
         f"{num(tp.mean_msgs_per_s)} / {num(tp.peak_msgs_per_s)} msgs/s"],
        ["latency p50 / p95 / p99", f"{num(lat.p50)} / {num(lat.p95)} / {num(lat.p99)} ms"],
    ]  # fmt: skip
    for i, f in enumerate(summary.failovers, 1):
        rows.append(
            [f"fault {i}: {f.kind} on {f.target}",
             f"failover {num(f.failover_s)} s, failback {num(f.failback_s)} s"]
        )  # fmt: skip
    cap = summary.capacity
    if cap.steps:
        rows.append(
            ["knee / max stable throughput",
             f"{num(cap.knee_msgs_per_s)} / {num(cap.max_stable_msgs_per_s)} msgs/s"]
        )  # fmt: skip
    return Table("Key numbers", "key-numbers", ["measure", "value"], rows)


MESSAGE_COLUMNS = (
    ("planned", "planned"), ("attempted", "attempted"), ("accepted", "accepted"),
    ("failed", "failed"), ("received_unique", "received"), ("lost", "lost"),
    ("refused_downstream", "refused downstream"),
    ("duplicates", "duplicates"), ("phantom", "phantom"), ("stranded", "stranded"),
    ("not_sent", "not sent"), ("in_flight", "in flight"), ("unverified", "unverified"),
    ("retried", "retried"),
)  # fmt: skip


def messages(summary: Summary) -> Table:
    m = summary.messages
    # unverified and refused downstream only where they happened.
    present = [(k, label) for k, label in MESSAGE_COLUMNS
               if k not in _WHERE_SEEN or getattr(m, k)]  # fmt: skip
    if m.suppressed:  # only where it happened: every recipient of a message suppressed
        present.append(("suppressed", "suppressed"))
    note = (
        "lost: accepted by the client, received by no sink; phantom: received but "
        "counted failed by the client (RFC 1047); received: unique messages some sink has; "
        "retried: accepted only after more than one attempt."
    )
    if m.unverified:
        note += (
            " unverified: accepted by a server maildrill does not own and cannot see past "
            "(no sink downstream, no proxy in front): not counted as lost."
        )
    if m.refused_downstream:
        note += (
            " refused downstream: accepted by a relay, then refused for good further on (a "
            "5xx naming the message, a backup MX's upstream bounce): bounced back to the "
            "sender, not counted as lost."
        )
    return Table(
        "Messages",
        "messages",
        [label for _, label in present],
        [[num(getattr(m, k)) for k, _ in present]],
        note=note,
    )


RECIPIENT_COLUMNS = (
    ("addressed", "addressed"), ("accepted", "accepted"), ("delivered", "delivered"),
    ("lost", "lost"), ("duplicated", "duplicated"), ("stranded", "stranded"),
    ("unverified", "unverified"), ("refused_downstream", "refused downstream"),
)  # fmt: skip
_WHERE_SEEN = ("unverified", "refused_downstream")  # columns shown only when not zero
# Each per-recipient count beside the per-message count it refines.
SAME_AS_MESSAGES = (
    ("addressed", "attempted"), ("accepted", "accepted"), ("lost", "lost"),
    ("duplicated", "duplicates"), ("stranded", "stranded"), ("unverified", "unverified"),
    ("refused_downstream", "refused_downstream"),
)  # fmt: skip


def recipients(summary: Summary) -> Table | None:
    """Per recipient, only where it says something the per-message counts do not: a
    message with several recipients (one count each), or parts of one message with
    different fates. None for a summary without the counts."""
    r, m = summary.recipients, summary.messages
    if r.accepted is None or r.addressed is None:  # no sender's journal to count from
        return None
    if all((getattr(r, k) or 0) == (getattr(m, msg) or 0) for k, msg in SAME_AS_MESSAGES):
        return None
    present = [
        (k, label) for k, label in RECIPIENT_COLUMNS if k not in _WHERE_SEEN or getattr(r, k)
    ]
    return Table(
        "Recipients",
        "recipients",
        [label for _, label in present],
        [[num(getattr(r, k)) for k, _ in present]],
        note=(
            "Each recipient of a message counted on its own: accepted: RCPT 250 in the "
            "attempt the server accepted (a recipient refused at RCPT is neither accepted "
            "nor lost); delivered: named in a receipt at a sink; stranded: still in a "
            "queue at the end; refused downstream: refused for good further on; lost: the "
            "rest; duplicated: named in more than one receipt."
        ),
    )


def throughput(summary: Summary) -> Table:
    tp = summary.throughput
    rows = [[name, num(s.accepted), num(s.mean_msgs_per_s)] for name, s in tp.per_server.items()]
    rows.append(["all", num(summary.messages.accepted), num(tp.mean_msgs_per_s)])
    note = f"peak 1 s bin: {num(tp.peak_msgs_per_s)} msgs/s."
    if tp.min_rolling_msgs_per_s is not None:
        note += (
            f" Lowest 5 s rate inside constant-rate stages (min_throughput): "
            f"{num(tp.min_rolling_msgs_per_s)} msgs/s, from {num(tp.min_rolling_at_s)} s."
        )
    return Table("Throughput", "throughput", ["server", "accepted", "mean msgs/s"], rows, note=note)


def backlog(summary: Summary) -> Table | None:
    """The sender's backlog (messages due, not yet accepted): its peak and when the last
    message went; None without the sender's journal. The series is in summary.json."""
    b = summary.backlog
    if b.peak is None:
        return None
    row = [num(b.peak), num(b.peak_at_s), num(b.completion_s), num(b.left_at_end)]
    return Table(
        "Backlog",
        "backlog",
        ["peak (messages)", "peak at (s)", "last accepted at (s)", "never accepted"],
        [row],
        note="Messages due by their planned time and not yet accepted by any server, "
        "in flight included; times from the campaign start.",
    )


LATENCY_KEYS = ("p50", "p90", "p95", "p99", "max")


def _row(values: Percentiles, keys: Sequence[str] = LATENCY_KEYS) -> list[str]:
    return [num(getattr(values, k)) for k in keys]


def latency(summary: Summary) -> Table:
    lat = summary.latency_ms
    rows = [["latency, all servers", *_row(lat)]]
    for name, values in lat.per_server.items():
        rows.append([f"latency, {name}", *_row(values)])
    rows.append(["response time, all servers", *_row(summary.response_time_ms)])
    rows.append(["lateness, first attempts", *_row(summary.lateness_ms)])
    return Table(
        "Latency, response time and lateness (ms)",
        "latency",
        ["measure", *LATENCY_KEYS],
        rows,
        note="latency: end - start of accepted attempts (the server's service time); response "
        "time: end of the accepted attempt - the message's intended send time (waiting, "
        "retries and failover included); lateness: start - intended send time of first "
        "attempts (how far the sender fell behind the schedule).",
    )


def streams(summary: Summary) -> Table | None:
    """One row per stream of the campaign: its counts and timings, each measured as the
    whole run's on that stream's messages alone. None with fewer than two streams (the
    Messages and Latency tables already say it all)."""
    if len(summary.streams) < 2:
        return None
    faults = bool(summary.failovers)
    rows = []
    for name, s in summary.streams.items():
        rows.append([
            name, num(s.planned), num(s.accepted), num(s.failed), num(s.lost),
            num(s.duplicates), num(s.not_sent),
            " / ".join(num(getattr(s.latency_ms, k)) for k in ("p50", "p95")),
            " / ".join(num(getattr(s.response_time_ms, k)) for k in ("p50", "p95", "p99")),
            " / ".join(num(getattr(s.lateness_ms, k)) for k in ("p50", "p95", "max")),
            *((" / ".join(num(f.failover_s) for f in s.failovers),
               num(sum(f.messages_delayed for f in s.failovers))) if faults else ()),
        ])  # fmt: skip
    note = (
        "Each stream's messages alone, counted and timed as the whole run's: response time "
        "is end of the accepted attempt - intended send time, lateness is start - intended "
        "send time of first attempts (how long due mail waited for the sender: with stream "
        "priorities, the lower-priority stream waits first)."
    )
    if faults:
        note += (
            " failover: per fault, onset to this stream's first message accepted elsewhere; "
            "delayed: its messages a fault delayed."
        )
    return Table(
        "Streams",
        "streams",
        ["stream", "planned", "accepted", "failed", "lost", "duplicates", "not sent",
         "latency p50/p95 ms", "response time p50/p95/p99 ms", "lateness p50/p95/max ms",
         *(("failover s", "delayed") if faults else ())],
        rows,
        note=note,
    )  # fmt: skip


PHASES = ("before", "during", "after")


def fault_phases(summary: Summary) -> Table | None:
    """Latency and response time before, during and after each fault."""
    rows = []
    keys = ("p50", "p95", "p99", "max")
    for i, f in enumerate(summary.failovers, 1):
        for phase in PHASES:
            p = f.phases.get(phase)
            if p is None:
                continue
            rows.append([
                f"{i}: {f.kind} on {f.target}", phase, num(p.accepted),
                *_row(p.latency_ms, keys), *_row(p.response_time_ms, keys),
            ])  # fmt: skip
    if not rows:
        return None
    return Table(
        "Around each fault (ms)",
        "fault-phases",
        ["fault", "phase", "accepted", "latency p50", "p95", "p99", "max",
         "response time p50", "p95", "p99", "max"],
        rows,
        note="Accepted attempts that ended before the onset, between onset and clear, and "
        "after the clear.",
    )  # fmt: skip


MONITOR_KEYS = ("monitor_detection_s", "monitor_recovery_s")


def failovers(summary: Summary) -> Table:
    rows = []
    inferred = False
    # Monitor timings only when a health prober ran (some value measured).
    monitored = any(getattr(f, k) is not None for f in summary.failovers for k in MONITOR_KEYS)
    for f in summary.failovers:
        added = f.added_latency_ms
        mark = " *" if f.onset_source == "first failed attempt" else ""
        inferred = inferred or bool(mark)
        rows.append([
            f.target, f.kind, num(f.onset_s) + mark, num(f.cleared_s),
            num(f.detection_s), num(f.failover_s), num(f.failback_s),
            num(f.recovery_s), num(f.longest_gap_s),
            num(f.messages_delayed), num(f.messages_failed),
            " / ".join(num(getattr(added, k)) for k in ("p50", "p95", "max")),
            *((num(getattr(f, k)) for k in MONITOR_KEYS) if monitored else ()),
        ])  # fmt: skip
    note = (
        "Seconds from run start (onset, cleared) and from onset or clear (the others). "
        "detection: onset to the first failed attempt at the target; failover: onset to the "
        "first accepted elsewhere; failback: clear to the first accepted again by the target; "
        "recovery: onset to throughput back at 90% of the pre-fault rate."
    )
    if inferred:
        note += " * target is not a maildrill sink: onset inferred from its first failed attempt."
    if monitored:
        note += (
            " monitor detection / recovery: onset to the first failed health probe, clear to "
            "the first passed one (what a monitoring system would have seen)."
        )
    return Table(
        "Failovers",
        "failovers",
        ["target", "fault", "onset s", "cleared s", "detection s", "failover s", "failback s",
         "recovery s", "longest gap s", "delayed", "failed", "added latency p50/p95/max ms",
         *(("monitor detection s", "monitor recovery s") if monitored else ())],
        rows,
        note=note,
        empty="no faults in this run",
    )  # fmt: skip


def dns_changes(summary: Summary) -> Table | None:
    """Beside the failovers: how the senders followed each DNS change (dns_follow.py)."""
    dns = summary.dns
    if dns is None or not dns.changes:
        return None
    rows = [
        [c.fault_id, c.edge.replace("_", " "), num(c.at_s), ", ".join(c.names),
         ", ".join(c.addresses), num(c.senders), num(c.first_follow_s), num(c.last_follow_s),
         num(c.last_stale_s), num(c.stale_attempts), num(c.not_followed)]
        for c in dns.changes
    ]  # fmt: skip
    return Table(
        "DNS changes",
        "dns-changes",
        ["fault", "edge", "at s", "names", "new addresses", "senders", "first follow s",
         "last follow s", "last stale s", "stale attempts", "not followed"],
        rows,
        note="Seconds from run start (at) and from the change (the others). A sender is a "
        "Locust process with its own DNS cache. first follow: the first attempt at a new "
        "address; last follow: when the last sender had moved for good (its first attempt at "
        "a new address after its last at an old one); last stale: the last attempt still at "
        f"an old address. Worst last follow (dns_follow_s): {num(dns.follow_s)} s.",
    )  # fmt: skip


def dns_faults(summary: Summary) -> Table | None:
    """The mail each fault of the run's DNS server deferred (a failed lookup: 4.4.3)."""
    dns = summary.dns
    if dns is None or not (dns.faults or dns.deferred):
        return None
    rows = [
        [f.fault_id, f.kind, num(f.onset_s), num(f.cleared_s), num(f.deferred_messages),
         num(f.deferred_attempts)]
        for f in dns.faults
    ]  # fmt: skip
    return Table(
        "DNS faults",
        "dns-faults",
        ["fault", "kind", "onset s", "cleared s", "deferred messages", "deferred attempts"],
        rows,
        note="Deferred: attempts deferred at phase dns (a temporary DNS failure) that started "
        f"in the window. Messages deferred at dns in the whole run: {num(dns.deferred)}.",
    )


def capacity(summary: Summary) -> Table | None:
    cap = summary.capacity
    if not cap.steps:
        return None
    rows = [
        [str(s.stage + 1), num(s.offered_msgs_per_s), num(s.accepted_msgs_per_s),
         percent(s.accepted_ratio), num(s.delivered_msgs_per_s), num(s.p95_latency_ms),
         num(s.p95_lateness_ms), num(s.failed_attempts), "yes" if s.stable else "no"]
        for s in cap.steps
    ]  # fmt: skip
    limit = cap.p95_limit_ms
    slo = f"p95 <= {num(limit)} ms" if limit is not None else "no p95 latency SLO"
    return Table(
        "Capacity (step load)",
        "capacity",
        ["stage", "offered msgs/s", "accepted msgs/s", "accepted/offered", "delivered msgs/s",
         "p95 ms", "p95 lateness ms", "failed attempts", "stable"],
        rows,
        note=(
            f"knee: {num(cap.knee_msgs_per_s)} msgs/s; max stable throughput: "
            f"{num(cap.max_stable_msgs_per_s)} msgs/s. Stable: accepted/offered >= "
            f"{percent(cap.stable_share)} and {slo}. Accepted: the stage's messages "
            f"accepted within {num(cap.on_time_s)} s of their intended time; "
            "delivered: accepted attempts that ended in the stage."
            + _knee_caveat(cap)
        ),
    )  # fmt: skip


def _knee_caveat(cap: Capacity) -> str:
    knee = cap.knee_msgs_per_s
    top = max(s.offered_msgs_per_s for s in cap.steps)
    if knee is None:
        return (
            " No step was stable: the knee, if any, lies below the lowest offered rate (see "
            "the lateness and the errors for what held the servers back)."
        )
    if knee == top:
        return (
            f" The highest step was stable: the knee lies at or above {num(top)} msgs/s; "
            "offer more to find it."
        )
    return ""


def slo_table(summary: Summary) -> Table:
    rows = [
        [c.rule, num(c.limit), num(c.value), "PASS" if c.passed else "FAIL", c.note]
        for c in summary.slo.checks
    ]
    return Table(
        "SLOs", "slo", ["rule", "limit", "measured", "verdict", "note"], rows,
        note="A metric with no measured value fails its check.",
        empty="the scenario sets no SLOs",
    )  # fmt: skip


def errors(summary: Summary) -> Table:
    items = sorted(summary.errors.items(), key=lambda kv: (-kv[1], kv[0]))
    return Table(
        "Errors",
        "errors",
        ["reply (or outcome at phase)", "attempts"],
        [[key, num(count)] for key, count in items],
        note="Failed attempts by reply code and enhanced code; without a reply, by outcome "
        "and the phase it was reached in.",
        empty="no failed attempts",
    )


# RFC 3463's subjects: what the second digit of an enhanced code is about.
BOUNCE_SUBJECTS = {
    "1": "addressing", "2": "mailbox", "3": "mail system", "4": "network and routing",
    "5": "mail delivery protocol", "6": "message content", "7": "security or policy",
    "x": "no enhanced code",
}  # fmt: skip


def bounces(summary: Summary) -> Table | None:
    """Hard and soft bounces per recipient, by class, stream and server; only when any
    recipient bounced or was suppressed."""
    b = summary.bounces
    if not (b.hard or b.soft or b.suppressed):
        return None
    rows = [["all recipients", num(b.attempted), num(b.hard), num(b.soft), num(b.rate)]]
    rows += [[f"stream {name}", num(r.attempted), num(r.hard), num(r.soft), num(r.rate)]
             for name, r in b.per_stream.items()]  # fmt: skip
    rows += [[f"server {name}", num(r.attempted), num(r.hard), num(r.soft), num(r.rate)]
             for name, r in b.per_server.items()]  # fmt: skip
    kinds = [
        f"{key} {BOUNCE_SUBJECTS.get(key.split('.')[1], '')}: {num(n)}".replace("  ", " ")
        for key, n in b.by_class.items()
    ]
    replies = [f"{key}: {num(n)}" for key, n in b.by_status.items()]
    rows += [["by class", "", "", "", "; ".join(kinds) or MISSING],
             ["by reply", "", "", "", "; ".join(replies) or MISSING],
             ["suppressed (not sent again)", num(b.suppressed), "", "", ""]]  # fmt: skip
    if b.unknown is not None:
        rows.append(["unknown in the plan / of them hard-bounced", num(b.unknown),
                     num(b.unknown_bounced), "", ""])  # fmt: skip
    if b.repeat_bounces:
        rows.append(["hard bounces of an address already suppressed", "",
                     num(b.repeat_bounces), "", ""])  # fmt: skip
    return Table(
        "Bounces",
        "bounces",
        ["recipients", "attempted", "hard", "soft", "bounce rate"],
        rows,
        note="Per recipient, by its last word: hard a 5xx, soft a 4xx after which nothing "
        "was tried again; rate = (hard + soft) / attempted. Decided by reply codes. A "
        "suppressed recipient had hard-bounced earlier in the run and was not sent again.",
    )


def journal_problems(summary: Summary) -> Table:
    problems = summary.journal_problems
    unreadable = problems.unreadable_lines
    torn = set(problems.torn_last_line)
    missing = problems.missing_lines
    rows = []
    for name, n in sorted(problems.skipped_lines.items()):
        why = []
        if name in unreadable:
            bad = unreadable[name]
            more = ", ..." if bad.lines > len(bad.first) else ""
            lines = ", ".join(str(line) for line in bad.first) + more
            why.append(f"{num(bad.lines)} unreadable (line {lines})")
        if name in missing:
            why.append(f"{num(missing[name].lines)} missing: cut short since the run ended")
        if name in torn:
            trusted = problems.torn_last_line_trusted
            why.append("last line torn" + ("" if trusted else " in a clean run: cut short"))
        rows.append([name, num(n), "; ".join(why)])
    return Table(
        "Journal problems",
        "journal-problems",
        ["file", "lines skipped", "why"],
        rows,
        note="Skipped lines are counted, never guessed at. An unreadable line may hold a "
        "message's receipt or attempt: no SLO counted from its journal passes. A torn last "
        "line is a writer killed mid-write (sinks journal before they reply: never "
        "acknowledged), unless the run finished cleanly: then the file was cut short, "
        "and counts as unreadable. A journal shorter than harness.json recorded at the end "
        "of the run was cut since: its missing lines count the same way.",
        empty="none: every journal line was read",
    )


def harness(summary: Summary) -> Table:
    h = summary.harness
    start = summary.started_at or 0.0
    rows: list[list[str]] = []
    if h.interrupted_by:
        rows.append([MISSING, "interrupted", f"by {h.interrupted_by}"])
    for d in h.sink_deaths:
        rows.append([num(d.get("at_s")), "sink died",
                     f"{d.get('sink')} (exit code {num(d.get('exit_code'))})"])  # fmt: skip
    for e in h.events:
        if e.get("event") == "sink_died":
            continue
        detail = ", ".join(f"{k} {_plain(v)}" for k, v in e.items() if k not in ("time", "event"))
        at = num(e["time"] - start) if e.get("time") and start else MISSING
        rows.append([at, str(e.get("event", "")).replace("_", " "), detail])
    if h.locust_exit_code not in (None, 0):
        rows.append([MISSING, "locust exit code", num(h.locust_exit_code)])
    return Table(
        "Harness events",
        "harness",
        ["at s", "event", "detail"],
        rows,
        note="Times from run start; negative: before the campaign started.",
        empty="no harness record (harness.json missing)",
    )


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
            return f"{value[0]}:{value[1]}"  # host and port
        return ", ".join(_plain(v) for v in value)
    return num(value)


def probes(summary: Summary) -> Table | None:
    """Health probes (loadtest.prober): per server availability and down windows."""
    p = summary.probes
    if not p.servers:
        return None
    rows = []
    for name, s in p.servers.items():
        downs = "; ".join(
            f"{num(d.start_s)}-{num(d.end_s)} s "
            f"({', '.join(f'{k} {num(v)}' for k, v in d.outcomes.items())})"
            for d in s.down
        )
        rows.append([
            name, num(s.probes), num(s.passed), percent(s.availability),
            " / ".join(num(getattr(s.latency_ms, k)) for k in ("p50", "p95", "max")),
            num(s.down_s), downs or "none",
        ])  # fmt: skip
    return Table(
        "Health probes",
        "probes",
        ["server", "probes", "passed", "availability", "latency p50/p95/max ms", "down s",
         "down windows (from run start)"],
        rows,
        note=f"One probe every {num(p.interval_ms)} ms, timeout {num(p.timeout_ms)} "
        "ms: connect, EHLO, QUIT, as an external monitor would.",
    )  # fmt: skip


def _p(lat: Percentiles) -> str:
    return " / ".join(_row(lat, ("p50", "p95", "p99", "max")))


def mta_delivery(summary: Summary) -> Table | None:
    """Mail through real MTAs under test, per path: MTA, then the sink it delivered to."""
    if not summary.mta:
        return None
    rows = []
    for name, m in summary.mta.items():
        rows.append([
            name, "(all)", num(m.accepted), num(m.delivered), num(m.duplicated),
            num(m.stranded), num(m.undelivered), _p(m.delivery_delay_ms), num(m.drain_s), "",
        ])  # fmt: skip
        for sink, path in m.paths.items():
            relayed = ", ".join(f"{k} {num(v)}" for k, v in path.relayed_by.items())
            rows.append([
                name, sink, "", num(path.messages), "", "", "",
                _p(path.delivery_delay_ms), "", f"{num(path.receipts)} ({relayed})",
            ])  # fmt: skip
    return Table(
        "Delivery through the MTAs under test",
        "mta",
        ["MTA", "to sink", "accepted", "delivered", "duplicated", "stranded", "undelivered",
         "delay p50/p95/p99/max ms", "queue drain s", "receipts (relayed by EHLO name)"],
        rows,
        note="accepted: the MTA's 250 to the client; delivered: a downstream sink has it; delay: "
        "from that 250 to the first receipt downstream; duplicated: delivered more often than "
        "it had recipients (an MTA stopped mid-delivery sends again); stranded: still in the "
        "MTA's queue at the end; queue drain: from the MTA's restart to the last delivery of "
        "what it held through the outage.",
    )  # fmt: skip


def relays(summary: Summary) -> Table | None:
    """Backup MXs (sink mode backup-mx): what they queued and forwarded, and when."""
    if not summary.relay:
        return None
    rows = [
        [name, r.upstream or MISSING, num(r.queued), num(r.forwarded),
         num(r.forward_attempts_deferred), num(r.bounced), num(r.left_in_queue),
         num(r.max_depth), num(r.drain_s), _p(r.end_to_end_ms)]
        for name, r in summary.relay.items()
    ]  # fmt: skip
    return Table(
        "Backup MX queues",
        "relay",
        ["backup MX", "forwards to", "queued", "forwarded", "deferred tries", "bounced",
         "left in queue", "max depth", "queue drain s", "end to end p50/p95/p99/max ms"],
        rows,
        note="end to end: from the client's 250 to the first receipt at the final sink; queue "
        "drain: from the upstream's recovery to an empty queue. The depth over time is "
        "relay.*.depth_series in summary.json.",
    )  # fmt: skip


def fault_proxies(summary: Summary) -> Table | None:
    """What went through each fault proxy, and what the server behind it answered."""
    if not summary.proxies:
        return None

    def counts(values: Mapping[str, int]) -> str:
        return ", ".join(f"{k} {num(v)}" for k, v in values.items()) or "none"

    rows = [
        [name, p.upstream or MISSING, num(p.sessions), counts(p.sessions_ended_by),
         num(p.messages), counts(p.server_replies), counts(p.cut_by_fault),
         num(p.accepted_then_cut), num(p.unanswered_at_session_end),
         f"{num(p.bytes_up)} / {num(p.bytes_down)}"]
        for name, p in summary.proxies.items()
    ]  # fmt: skip
    return Table(
        "Fault proxies",
        "proxies",
        ["proxy", "in front of", "sessions", "sessions ended by", "messages",
         "server's reply to the dot", "cut by a fault", "accepted, then cut",
         "no reply, session ended", "bytes up / down"],
        rows,
        note="accepted, then cut: the server behind said 250, the proxy cut the client before "
        "it heard it (drop): a retry makes a duplicate. no reply, session ended: the client or "
        "server ended the session before the reply to a dot. For a server maildrill does not "
        "own, a 250 seen by the proxy counts as its receipt.",
    )  # fmt: skip


def preflight(summary: Summary) -> Table | None:
    pre = summary.preflight
    if pre is None:
        return None
    rows = [["verdict", "ok" if pre.ok else "NOT OK"],
            ["reference server", pre.reference or MISSING]]  # fmt: skip
    rows += [["flag", _plain(f.model_dump(mode="json"))] for f in pre.flags or []]
    rows += [["note", _plain(n)] for n in pre.notes or []]
    return Table("Pre-flight check", "preflight", ["check", "value"], rows)


# -- authentication (summary.json's `auth`: loadtest.analysis.auth) --------------------------
# Which path delivered mail a provider would not take, and which check failed there; both
# tables absent when no sink verifies.

AUTH_CHECKS = ("spf", "dkim", "dmarc", "ptr")
_AUTH_COUNT_HEADERS = ["checked", "delivered", "clean", "DMARC fail", "unauthenticated", "refused"]
_AUTH_SHARE_HEADERS = ["SPF pass", "DKIM pass", "DMARC pass", "PTR pass"]
_AUTH_NOTE = (
    "Mail the sinks with verify: checked, as a provider would: checked = delivered + "
    "refused; clean: delivered with DMARC and PTR passing; DMARC fail: delivered, though a "
    "provider would put it in spam or refuse it; unauthenticated: delivered with neither "
    "SPF nor DKIM passing; refused: the provider's refusal (enforce:). Pass shares are of "
    "every message whose verdicts are known, refused ones included (as a provider's DMARC "
    "report counts them). Did not pass: each check's other verdicts on the deliveries, "
    "then the refusals by reply, each with the checks that did not pass."
)


def _auth_row(c: AuthCounts) -> list[str]:
    """The counts, the pass shares and what did not pass, as the tables' columns."""
    counts = (c.checked, c.delivered, c.clean, c.dmarc_fail, c.unauthenticated, c.refused)
    shares = (c.spf_pass_share, c.dkim_pass_share, c.dmarc_pass_share, c.ptr_pass_share)
    return [*map(num, counts), *map(percent, shares), auth_did_not_pass(c)]


def auth_did_not_pass(c: AuthCounts) -> str:
    """The checks that failed on the deliveries, by verdict, then the refusals, each with
    the checks that failed on it: "dkim none 3; dmarc fail 2; refused 550 5.7.26 3: spf
    fail 3; dkim none 3"; "none" when every check passed."""
    refused_checks = list(c.refused_verdicts.values())
    delivered = {}
    for check in AUTH_CHECKS:
        # The tallies count refused mail too: what is left is the deliveries'.
        tally: dict[str, int] = getattr(c, check)
        left = {
            verdict: n - sum(r.get(check, {}).get(verdict, 0) for r in refused_checks)
            for verdict, n in tally.items()
            if verdict != "pass"
        }
        delivered[check] = {
            v: n for v, n in sorted(left.items(), key=lambda vn: (-vn[1], vn[0])) if n > 0
        }
    parts = [_failing(delivered)] if any(delivered.values()) else []
    for reply, n in c.refused_by.items():
        why = c.refused_verdicts.get(reply)
        parts.append(f"refused {reply} {num(n)}" + (f": {_failing(why)}" if why else ""))
    return "; ".join(parts) or "none"


def _failing(verdicts: dict[str, dict[str, int]]) -> str:
    """{"spf": {"fail": 2, "softfail": 1}, "dkim": {"none": 3}} as "spf fail 2, softfail 1;
    dkim none 3", in the checks' order."""
    return "; ".join(
        f"{check} {', '.join(f'{v} {num(n)}' for v, n in verdicts[check].items())}"
        for check in AUTH_CHECKS
        if verdicts.get(check)
    )


def auth_paths(summary: Summary) -> Table | None:
    """Per delivery path (the server the sender handed the mail to, the sink, the address
    that delivered it), then every verifying sink, every server (when several), the whole
    run."""
    auth = summary.auth
    if auth is None:
        return None
    rows = []
    for p in auth.paths.values():
        sender = f"{p.peer} ({', '.join(p.helo)})" if p.helo else p.peer or MISSING
        rows.append([p.server or MISSING, p.sink, sender, *_auth_row(p)])
    for name, s in auth.sinks.items():
        enforce = f"(all; enforce {s.enforce})" if s.enforce else "(all)"
        rows.append(["(all)", name, enforce, *_auth_row(s)])
    if len(auth.servers) > 1:  # one server: its row would be the whole run's
        for name, c in auth.servers.items():
            shown = MISSING if name == AUTH_UNKNOWN_SERVER else name
            rows.append([shown, "(all)", "(all)", *_auth_row(c)])
    rows.append(["(all)", "(all)", "", *_auth_row(auth)])
    return Table(
        "Authentication on each path",
        "auth",
        ["server", "sink", "delivered from (EHLO)", *_AUTH_COUNT_HEADERS, *_AUTH_SHARE_HEADERS,
         "did not pass"],
        rows,
        note=_AUTH_NOTE + " server: the one that took the message from the sender (n/a: no "
        "sender's journal); delivered from: the address (and EHLO name) that delivered it "
        "to the sink.",
    )  # fmt: skip


def auth_faults(summary: Summary) -> Table | None:
    """Around each fault: before, during and after it, the whole run's counts, then each
    path with mail in that phase."""
    auth = summary.auth
    if auth is None or not auth.faults:
        return None
    rows = []
    for i, fault in enumerate(auth.faults):
        cleared = f"{num(fault.cleared_s)} s" if fault.cleared_s is not None else "the end"
        label = f"{fault.kind} on {fault.target} ({num(fault.onset_s)} s to {cleared})"
        for phase in ("before", "during", "after"):
            whole: AuthCounts = getattr(fault, phase)
            rows.append([label, phase, "(all)", *_auth_row(whole)])
            for key, path in auth.paths.items():
                if i >= len(path.faults):  # a summary.json made elsewhere
                    continue
                mine: AuthCounts = getattr(path.faults[i], phase)
                if mine.checked:
                    rows.append([label, phase, key, *_auth_row(mine)])
    return Table(
        "Authentication around each fault",
        "auth-faults",
        ["fault", "phase", "path", *_AUTH_COUNT_HEADERS, *_AUTH_SHARE_HEADERS, "did not pass"],
        rows,
        note=_AUTH_NOTE + " Phases by the time the sink checked the message (mail an MTA held "
        "through an outage and delivered after it counts after); path: SERVER>SINK@PEER.",
    )  # fmt: skip


def auth_lines(summary: Summary) -> list[str]:
    """The lines `maildrill run` and `report` print: the whole run's checks, then each
    path where mail was not clean and what did not pass there (none without `auth`)."""
    auth = summary.auth
    if auth is None:
        return []
    refused = ", ".join(f"{k} {num(v)}" for k, v in auth.refused_by.items())
    lines = [
        f"auth: {auth.checked} checked at {', '.join(auth.sinks)}: {auth.clean} clean, "
        f"{auth.dmarc_fail} delivered failing DMARC, {auth.unauthenticated} unauthenticated, "
        f"{auth.refused} refused" + (f" ({refused})" if refused else "")
    ]
    for key, path in auth.paths.items():
        if path.clean < path.checked:
            lines.append(f"  {key}: {path.checked - path.clean} of {path.checked} not clean: "
                         f"{auth_did_not_pass(path)}")  # fmt: skip
    return lines


# Keys of the Summary this view lays out itself; any other is listed under "More results".
RENDERED = {
    "scenario", "run_id", "started_at", "duration_s", "partial", "messages", "recipients",
    "throughput",
    "latency_ms", "response_time_ms", "lateness_ms", "errors", "failovers", "probes",
    "preflight", "journal_problems", "harness", "capacity", "slo", "mta", "relay", "proxies",
    "bounces", "streams", "auth",
}  # fmt: skip
RENDERED |= {"dns"}  # the DNS changes and DNS faults tables
RENDERED |= {"backlog"}  # the Backlog table; its series stays in summary.json
RENDERED |= {"received", "needs_sender_journal"}  # view_received.py lays them out
MAX_MORE_ROWS = 200


def more(summary: Summary) -> Table | None:
    """Every other non-empty key of the Summary, flattened: nothing the summary says is
    left out of the report, whatever is added to it (a new field of the model, or a key
    of a newer summary.json)."""
    rows: list[list[str]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{path}.{k}", v)
        elif isinstance(value, list) and value and isinstance(value[0], Mapping | list):
            for i, v in enumerate(value):
                walk(f"{path}[{i}]", v)
        else:
            rows.append([path, _plain(value) if not isinstance(value, str) else value])

    for key, value in summary.model_dump(mode="json").items():
        if key not in RENDERED and value not in (None, {}, []):
            walk(key, value)
    if not rows:
        return None
    shown = rows[:MAX_MORE_ROWS]
    note = (
        "" if len(rows) <= MAX_MORE_ROWS else f"{len(rows) - MAX_MORE_ROWS} more in summary.json."
    )
    return Table("More results", "more", ["key", "value"], shown, note=note)


LEAD_PLOT = "throughput"  # what happened, at a glance: mail per server with the faults on it


def lead_caption(summary: Summary) -> str:
    """What the lead plot marks: each fault window, from its onset to its clear."""
    windows = [
        f"{f.kind} on {f.target} from {num(f.onset_s)} s to "
        + (f"{num(f.cleared_s)} s" if f.cleared_s is not None else "the end")
        for f in summary.failovers
    ]
    faults = f"shaded: the fault windows ({'; '.join(windows)})" if windows else "no faults"
    return f"Accepted messages per second per server over the run; {faults}."


def build(summary: Summary, plots: Sequence[PlotRef] = (), scenario_text: str = "") -> ReportView:
    sections = [key_numbers(summary), messages(summary)]
    per_recipient = recipients(summary)
    if per_recipient is not None:
        sections.append(per_recipient)
    sections.append(throughput(summary))
    waiting = backlog(summary)
    if waiting is not None:
        sections.append(waiting)
    sections += [latency(summary), failovers(summary)]
    sections += [t for t in (dns_changes(summary), dns_faults(summary)) if t is not None]
    per_stream = streams(summary)
    if per_stream is not None:
        sections.append(per_stream)
    for extra in (fault_phases(summary), mta_delivery(summary), auth_paths(summary),
                  auth_faults(summary), relays(summary), fault_proxies(summary),
                  capacity(summary), probes(summary)):  # fmt: skip
        if extra is not None:
            sections.append(extra)
    sections += [slo_table(summary), errors(summary)]
    extra_bounces = bounces(summary)
    if extra_bounces is not None:
        sections.append(extra_bounces)
    for extra in (preflight(summary), more(summary)):
        if extra is not None:
            sections.append(extra)
    sections += [journal_problems(summary), harness(summary)]
    name = summary.scenario or "run"
    return report_view(
        f"maildrill report: {name}", summary, verdict(summary), sections, plots,
        scenario_text, LEAD_PLOT, lead_caption,
    )  # fmt: skip


def report_view(
    title: str,
    summary: Summary,
    said: Verdict,
    sections: list[Table],
    plots: Sequence[PlotRef],
    scenario_text: str,
    lead_name: str,
    caption: Callable[[Summary], str],
) -> ReportView:
    """A report's view, its `lead_name` plot taken out of the others to lead, right under
    the verdict (what happened at a glance), with its caption."""
    lead = next((p for p in plots if p.name == lead_name), None)
    return ReportView(
        title=title,
        facts=facts(summary),
        verdict=said,
        sections=sections,
        plots=[p for p in plots if p is not lead],
        scenario_text=scenario_text,
        lead_plot=lead,
        lead_caption=caption(summary) if lead else "",
    )
