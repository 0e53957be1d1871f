"""summary.json: `summarise` builds the `Summary` of a loaded run directory; `write` saves it.

`summarise` is a pure function of `RunDir` (loadtest.analysis.loaded), which did all the
reading: the same run directory gives the same summary, and a test can build one from a
hand-made `RunDir`. The keys and their types are the model's (summary_model.py, generated
into docs/summary.md); each number is defined in docs/metrics.md. Each part is built, as
its model, by the module that computes it (metrics, failover, relay, proxies, delivery,
probes, capacity, reconcile, slo): here they are only put together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from loadtest.analysis import (
    attempt_figures,
    auth,
    bounces,
    by_address,
    capacity,
    delivery,
    dns_follow,
    dns_windows,
    downstream,
    failover,
    fault_windows,
    metrics,
    probes,
    proxies,
    received,
    recipients,
    reconcile,
    relay,
    report_child,
    slo,
    streams,
)
from loadtest.analysis.journals import Damage
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.rundir import RunDirError
from loadtest.analysis.summary_model import (
    Failover,
    JournalProblems,
    MissingLines,
    Received,
    Recipients,
    Summary,
    UnreadableLines,
)
from loadtest.server_spec import SinkSpec

# The figures of a run's attempts alone (attempt_figures.of).
FiguresOf = Callable[[RunDir, pd.DataFrame], attempt_figures.AttemptFigures]


def summarise(run: RunDir, figures_of: FiguresOf = attempt_figures.of) -> Summary:
    """The summary of a loaded run directory (no file is read here). `figures_of` makes
    the figures of this run's attempts alone (`report_child` hands one that takes them
    from the child that made them)."""
    journals, scenario = run.journals, run.scenario
    attempts = attempt_figures.run_attempts(journals)
    run_id = run.run.run_id
    planned = attempt_figures.planned(run)
    servers = scenario.servers if scenario else []
    upstream_of = {s.name: upstream for s in servers if (upstream := _upstream(s.sink))}
    # What a server maildrill does not own accepted: the proxy in front of it saw the 250.
    witness_of = {s.name: w for s in servers if scenario and (w := scenario.witness(s.name))}
    seen = proxies.witnessed_receipts(journals.proxy, set(witness_of.values()))
    receipts = journals.receipts
    if len(seen):
        receipts = pd.concat([receipts, seen], ignore_index=True)
    unobserved = frozenset(
        s.name for s in servers
        if scenario and not scenario.observed(s.name) and s.name not in witness_of
    )  # fmt: skip
    t0 = run.t0
    end = float(attempts["end"].max()) if len(attempts) else t0
    windows = fault_windows.fault_windows(journals.faults)
    dns_served = scenario is not None and scenario.dns is not None

    def measured(window: fault_windows.FaultWindow, figures: Failover) -> Failover:
        """A DNS fault's window: its figures about a target server cleared."""
        if dns_windows.is_dns_window(window.target, dns_served):
            return dns_windows.as_dns_fault(figures)
        return figures

    # Attempts at a server named by DNS, credited to the local sink at their address.
    at_sinks = by_address.credit_sinks(attempts, servers)
    if scenario is not None:
        # Servers maildrill does not own keep no faults journal: infer their trouble.
        foreign = {s.name for s in scenario.servers if not s.local and s.postfix is None}
        foreign -= by_address.reached_sinks_only(attempts, at_sinks)
        windows += fault_windows.infer_windows(attempts, foreign)
    sink_side: Received | None = None
    not_sent = attempt_figures.not_sent(run)  # messages not sent: every recipient suppressed
    if run.has_sender_journal:
        per = reconcile.messages(attempts, receipts)
        stuck = frozenset(journals.mta_queue["msg_id"]) if len(journals.mta_queue) else frozenset()
        events = journals.relay
        released = frozenset(events.loc[events["event"].isin(relay.DONE_EVENTS), "msg_id"])
        refused = downstream.refused_for_good(events, journals.refusals)
        suppressed = frozenset(not_sent["msg_id"]) if len(not_sent) else frozenset()
        counts = reconcile.count(
            per, planned, run_id, stuck, unobserved, released, refused, suppressed
        )
        per_recipient = recipients.count(
            per, attempts, receipts, journals.mta_queue, run_id, unobserved, released, refused
        )
        failovers = [
            measured(w, failover.analyse(w, at_sinks, per, run.probes, t0, end)) for w in windows
        ]
        figures = figures_of(run, attempts)
        no_probes = run.probes.iloc[:0]  # probes carry no stream: no monitor timings per stream
        # Without probes or attempts credited to sinks, a stream of every attempt and
        # message has the run's very figures: they are not measured a second time.
        same_as_run = at_sinks is attempts and run.probes.empty

        def stream_failover(
            w: fault_windows.FaultWindow, frame: pd.DataFrame, messages: pd.DataFrame
        ) -> Failover:
            if same_as_run and frame is attempts and messages is per:
                return failovers[windows.index(w)]
            return measured(w, failover.analyse(w, frame, messages, no_probes, t0, end))

        by_stream = streams.summarise(
            attempts,
            per,
            not_sent,
            scenario.campaign.stream_plan() if scenario else None,
            planned,
            run_id,
            lambda frame, n, unsent: reconcile.count(
                frame, n, run_id, stuck, unobserved, released, refused, unsent
            ),
            windows,
            stream_failover,
            figures,
        )
    else:
        # Another sender, no attempts: the messages and the faults from the receipts alone
        # (received.py); the parts built from attempts below come out empty, and
        # `needs_sender_journal` names them.
        per = pd.DataFrame()
        end = received.last_moment(journals.sink_side(), t0)
        frame, names = received.of_run(run)
        sink_side = received.summarise(frame, names, t0)
        counts = received.messages(sink_side)
        per_recipient = Recipients()
        failovers = [
            measured(w, received.analyse(w, frame, names, run.probes, t0, end)) for w in windows
        ]
        by_stream = {}  # receipts carry no stream: `streams` needs the sender's journal
        figures = attempt_figures.of(run, attempts)
    mtas = {s.name for s in scenario.servers if s.postfix is not None} if scenario else set()
    rules = scenario.slo if scenario else []
    schedule = scenario.campaign.build_schedule() if scenario else None
    summary = Summary(
        scenario=scenario.name if scenario else run.run.scenario,
        run_id=run_id,
        started_at=t0,
        duration_s=round(end - t0, 3) if len(attempts) or sink_side else 0.0,
        partial=run.partial,
        messages=counts,
        recipients=per_recipient,
        throughput=figures.throughput,
        latency_ms=figures.latency,
        response_time_ms=figures.response_time,
        lateness_ms=figures.lateness,
        errors=metrics.errors(attempts),
        failovers=failovers,
        relay=relay.summarise(
            journals.relay, attempts, journals.receipts, windows, upstream_of, t0
        ),
        proxies=proxies.summarise(journals.proxy, upstream_of),
        mta=delivery.summarise(attempts, journals.receipts, per, journals.mta_queue, mtas, windows),
        probes=probes.summarise(
            run.probes,
            t0,
            scenario.probe_interval_ms if scenario else None,
            scenario.probe_timeout_ms if scenario else None,
        ),
        preflight=run.preflight,
        journal_problems=journal_problems(
            journals.damage | run.probe_damage, run.writer_may_have_died
        ),
        harness=run.harness,
        capacity=capacity.capacity(attempts, schedule, t0, rules),
        backlog=figures.backlog,
        bounces=bounces.summarise(attempts, not_sent, scenario, run_id, planned),
        streams=by_stream,
        auth=auth.summarise(
            journals.receipts,
            journals.refusals,
            attempts,
            per,
            auth.verifying_sinks(servers),
            windows,
            t0,
            campaign_only=run.has_sender_journal,
        ),
        received=sink_side,
        dns=dns_follow.summarise(journals.faults, attempts, t0)
        if dns_served and run.has_sender_journal
        else None,
        needs_sender_journal=[] if sink_side is None else list(received.NEEDS_SENDER_JOURNAL),
    )
    torn_ok = run.writer_may_have_died
    unreadable = {
        name: (d.kind, d.unreadable + d.missing + int(d.torn and not torn_ok))
        for name, d in journals.damage.items()
    }
    summary.slo = slo.check(
        rules,
        slo.metric_values(summary),
        faults=len(failovers),
        unreadable=unreadable,
        unmeasured=summary.needs_sender_journal,
    )
    if run.harness.aborted_by:  # a drill without its fault passes nothing
        summary.slo.passed = False
    return summary


def journal_problems(damage: dict[str, Damage], torn_trusted: bool) -> JournalProblems:
    """What the journals left out: every line skipped per file; the complete lines that
    could not be read (their kind, count and first line numbers) and the lines cut off since
    the run ended (shorter than harness.json recorded), both of which keep the SLOs counted
    from that kind of journal from passing; the files whose last line is torn, and
    whether that is a writer killed mid-write (trusted) or a file cut short (not)."""
    ordered = sorted(damage.items())
    return JournalProblems(
        skipped_lines={name: d.skipped for name, d in ordered},
        unreadable_lines={
            name: UnreadableLines(
                kind=d.kind, lines=d.unreadable, first=list(d.lines), missing=d.missing
            )
            for name, d in ordered
            if d.unreadable
        },
        missing_lines={
            name: MissingLines(kind=d.kind, lines=d.missing) for name, d in ordered if d.missing
        },
        torn_last_line=sorted(name for name, d in damage.items() if d.torn),
        torn_last_line_trusted=torn_trusted,
    )


def write(run_dir: Path, reports: bool = True) -> Summary:
    """summary.json, then (unless `reports` is false) plots, series, report.html/.md."""
    run = RunDir.load(run_dir)
    _made_by_run(run)
    _outputs_are_not_links(run_dir)
    # The reports' series are made beside the summary, in a child (report_child).
    with report_child.Reports(run_dir, run, fork=None if reports else False) as pages:
        summary = summarise(run, pages.figures)
        (run_dir / "summary.json").write_text(as_json(summary))
        if reports:
            pages.write(summary)
    return summary


def as_json(summary: Summary) -> str:
    """summary.json's text (what `maildrill report --json` prints)."""
    return json.dumps(summary.model_dump(mode="json"), indent=2) + "\n"


OUTPUTS = ("summary.json", "report.md", "report.html", "plots", "series")


def _outputs_are_not_links(run_dir: Path) -> None:
    """Run directories travel between people: a symbolic link planted where a report goes
    would have `maildrill report` write (or delete stale plots) outside the run directory."""
    for name in OUTPUTS:
        path = run_dir / name
        inner = list(path.iterdir()) if path.is_dir() and not path.is_symlink() else []
        for candidate in (path, *inner):
            if candidate.is_symlink():
                raise RunDirError(
                    candidate, "a symbolic link: reports are written only inside the run directory"
                )


def _made_by_run(run: RunDir) -> None:
    """A run `maildrill run` finished is whole: run.json and scenario.yaml come before any
    load, harness.json last. With a finished harness.json there, a missing first one was
    removed, and without scenario.yaml there are no SLOs to judge: the report would pass
    on nothing. (A `maildrill sinks` run has no run.json: Locust never ran.)"""
    if not run.finished:
        return  # a `maildrill sinks` journal directory, or a run stopped before its end
    for name in ("run.json", "scenario.yaml") if run.has_sender_journal else ("scenario.yaml",):
        if not (run.path / name).exists():
            raise RunDirError(run.path / name, "missing, yet harness.json says a run was here")


def _upstream(sink: SinkSpec) -> str | None:
    """A backup MX's or proxy's upstream: a server's name, or host:port."""
    address = sink.upstream_address
    if address is not None:
        return f"{address.host}:{address.port}"
    return sink.upstream_server or None
