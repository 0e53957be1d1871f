"""The report of a run without the sender's journal (loadtest.analysis.received), as tables
of strings from the Summary alone, for the same renderers as `view.build`.

It shows what a receipt proves (receipts per server, gaps, duplicates, each fault's
failover and failback as first receipts) and says in words what needs the sender's journal,
rather than printing the zeros those keys hold in summary.json.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.analysis import view
from loadtest.analysis.summary_model import Received, Summary
from loadtest.analysis.view import PlotRef, ReportView, Table, Verdict, num

# needs_sender_journal's keys in words; a key not here is shown as it is.
WORDS = {
    "messages.planned": "planned",
    "messages.attempted": "attempted",
    "messages.accepted": "accepted",
    "messages.failed": "failed",
    "messages.lost": "lost",
    "messages.phantom": "phantom",
    "messages.stranded": "stranded",
    "messages.not_sent": "not sent",
    "messages.in_flight": "in flight",
    "messages.unverified": "unverified",
    "messages.retried": "retried",
    "throughput": "throughput",
    "latency_ms": "latency",
    "response_time_ms": "response time",
    "lateness_ms": "lateness",
    "errors": "the replies the sender got",
    "failovers[].detection_s": "detection",
    "failovers[].messages_delayed": "messages delayed by a fault",
    "failovers[].messages_failed": "messages failed by a fault",
    "failovers[].added_latency_ms": "added latency",
    "failovers[].phases": "latency around each fault",
    "relay.*.end_to_end_ms": "backup MX end-to-end delay",
    "mta": "delivery through MTAs under test",
    "capacity": "capacity",
    "streams": "per-stream results",
}


def needs_in_words(summary: Summary) -> str:
    """The sentence that says what this report cannot show."""
    named = ", ".join(WORDS.get(key, key) for key in summary.needs_sender_journal)
    return (
        "No sender's journal (attempts.csv): the mail came from another sender, so only what "
        f"the sinks journaled is measured. Not measured: {named}."
    )


def verdict(summary: Summary) -> Verdict:
    v = view.verdict(summary)
    return Verdict(v.status, v.headline, f"{v.detail} {needs_in_words(summary)}")


def _received(summary: Summary) -> Received:
    assert summary.received is not None, "a summary without the sender's journal"
    return summary.received


def key_numbers(summary: Summary) -> Table:
    r = _received(summary)
    rows = [
        ["receipts", num(r.receipts)],
        ["messages received (distinct)", num(r.messages)],
        ["duplicates (extra copies)", f"{num(r.duplicates)} ({num(r.extra_copies)})"],
        ["longest gap with no receipt anywhere", f"{num(r.longest_gap_s)} s"],
    ]
    for i, f in enumerate(summary.failovers, 1):
        rows.append(
            [f"fault {i}: {f.kind} on {f.target}",
             f"failover {num(f.failover_s)} s, failback {num(f.failback_s)} s, "
             f"longest gap {num(f.longest_gap_s)} s"]
        )  # fmt: skip
    return Table("Key numbers (receipts)", "key-numbers", ["measure", "value"], rows)


def servers(summary: Summary) -> Table:
    r = _received(summary)
    rows = [
        [name, num(s.receipts), num(s.dropped), num(s.first_s), num(s.last_s),
         num(s.longest_gap_s)]
        for name, s in r.servers.items()
    ]  # fmt: skip
    return Table(
        "Receipts per server",
        "received",
        ["server", "receipts", "dropped", "first s", "last s", "longest gap s"],
        rows,
        note="receipts: messages the server's sink acknowledged (a backup MX's queued ones "
        "too; a sink behind a fault proxy counts for the proxy); dropped: journaled, then "
        "cut before the 250. Seconds from run start; longest gap: the longest stretch with no "
        "receipt at this server, from the first receipt anywhere to the last.",
        empty="no server kept a journal here",
    )


def faults(summary: Summary) -> Table:
    rows = []
    for f in summary.failovers:
        gaps = ", ".join(f"{k} {num(v)}" for k, v in f.longest_gap_by_server_s.items())
        rows.append([
            f.target, f.kind, num(f.onset_s), num(f.cleared_s), num(f.failover_s),
            num(f.failback_s), num(f.recovery_s), num(f.longest_gap_s), gaps or view.MISSING,
        ])  # fmt: skip
    return Table(
        "Faults, timed by receipts",
        "failovers",
        ["target", "fault", "onset s", "cleared s", "failover s", "failback s", "recovery s",
         "longest gap s", "longest gap per server s"],
        rows,
        note="Seconds from run start (onset, cleared) and from onset or clear (the others), "
        "from the faults journals and the receipts. failover: onset to the first receipt at "
        "another server; failback: clear to the first receipt at the target; recovery: onset "
        "to receipts back at 90% of the rate before; longest gap: the longest stretch of the "
        "fault with no receipt anywhere (per server: none at that server).",
        empty="no faults in this run",
    )  # fmt: skip


def duplicates(summary: Summary) -> Table:
    r = _received(summary)
    rows = [
        ["messages received", num(r.messages)],
        ["of which known by Message-ID alone (no X-Maildrill-Id)", num(r.by_message_id)],
        ["received more than once", num(r.duplicates)],
        ["extra copies", num(r.extra_copies)],
        ["receipts with neither header (not matched)", num(r.unidentified)],
    ]
    return Table(
        "Duplicates",
        "duplicates",
        ["measure", "count"],
        rows,
        note="A message is known by its X-Maildrill-Id header, or by its Message-ID when it "
        "has none; one received more than once (at any server, dropped deliveries included, "
        "a backup MX's queued hop not) is a duplicate.",
    )


def build(summary: Summary, plots: Sequence[PlotRef] = (), scenario_text: str = "") -> ReportView:
    sections = [key_numbers(summary), servers(summary), faults(summary), duplicates(summary)]
    for extra in (view.auth_paths(summary), view.auth_faults(summary), view.relays(summary),
                  view.fault_proxies(summary), view.probes(summary)):  # fmt: skip
        if extra is not None:
            sections.append(extra)
    sections.append(view.slo_table(summary))
    for extra in (view.preflight(summary), view.more(summary)):
        if extra is not None:
            sections.append(extra)
    sections += [view.journal_problems(summary), view.harness(summary)]
    name = summary.scenario or "run"
    return view.report_view(
        f"maildrill report: {name} (receipts only)", summary, verdict(summary), sections,
        plots, scenario_text, LEAD_PLOT, lead_caption,
    )  # fmt: skip


LEAD_PLOT = "received"


def lead_caption(summary: Summary) -> str:
    """What the lead plot marks: each fault window, from its onset to its clear."""
    return view.lead_caption(summary).replace(
        "Accepted messages per second per server", "Receipts per second per server"
    )
