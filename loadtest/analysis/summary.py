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
import math
from collections.abc import Callable
from dataclasses import dataclass, field
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
    partitions,
    probes,
    proxies,
    received,
    recipients,
    reconcile,
    relay,
    report_child,
    slo,
    streams,
    tally,
)
from loadtest.analysis.histograms import Slots
from loadtest.analysis.journals import Damage, Journals
from loadtest.analysis.loaded import RunDir, has_sender_journal
from loadtest.analysis.rundir import HARNESS, RUN, RunDirError, read_json
from loadtest.analysis.summary_model import (
    Failover,
    JournalProblems,
    Messages,
    MissingLines,
    Received,
    Recipients,
    Summary,
    UnreadableLines,
)
from loadtest.schedule import Schedule
from loadtest.server_spec import ServerSpec, SinkSpec

# The figures of a run's attempts alone (attempt_figures.of).
FiguresOf = Callable[[RunDir, pd.DataFrame], attempt_figures.AttemptFigures]


@dataclass
class Counted:
    """Every share's counts of the parts made per message, added (`tally.added`)."""

    messages: dict[str, int]  # Messages' fields
    recipients: dict[str, int | None]  # Recipients' fields
    failovers: tuple[failover.Tally, ...]
    streams: streams.Tally
    errors: dict[str, int]
    relay: dict[str, Slots]
    mta: dict[str, delivery.Mta]
    capacity: tuple[capacity.Step, ...]
    bounces: bounces.Tally
    auth: auth.Tally
    dns: list[pd.DataFrame]
    figures: attempt_figures.Part


@dataclass(frozen=True)
class Whole:
    """What the parts need of the whole run before any share is counted: its last
    attempt's end, and the fault windows (those journaled, those inferred for servers
    maildrill does not own)."""

    attempted: bool  # any attempt at all
    end: float
    windows: list[fault_windows.FaultWindow]


def _earliest_each(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: min(a.get(k, math.inf), b.get(k, math.inf)) for k in a | b}


@dataclass
class _Seen:
    """What the first pass keeps of each share (added over shares)."""

    end: float | None = field(default=None, metadata={tally.ADD: tally.latest})
    servers: set[str] = field(default_factory=set)  # the servers the attempts name
    kept: set[str] = field(default_factory=set)  # those with an attempt not at a sink
    onsets: dict[str, float] = field(default_factory=dict, metadata={tally.ADD: _earliest_each})


def _whole(run: RunDir, servers: list[ServerSpec], t0: float) -> Whole:
    """A first pass over the shares: the run's end and its inferred fault windows."""
    scenario = run.scenario
    windows = fault_windows.fault_windows(run.journals.faults)
    # Servers maildrill does not own keep no faults journal: their trouble is inferred.
    foreign = (
        {s.name for s in scenario.servers if not s.local and s.postfix is None}
        if scenario is not None
        else set()
    )
    if run.split is not None and not foreign:  # the split saw the end: no pass needed
        last = run.split.last_end
        return Whole(last == last, last if last == last else t0, windows)
    seen = tally.total(
        [_Seen(), *run.each_share(lambda part: _seen(run.share(part).journals, servers, foreign))]
    )
    if scenario is not None:
        foreign -= seen.servers - seen.kept  # servers every attempt of which reached a sink
        windows += fault_windows.inferred({s: t for s, t in seen.onsets.items() if s in foreign})
    attempted = seen.end is not None
    return Whole(attempted, seen.end if seen.end is not None else t0, windows)


def _seen(journals: Journals, servers: list[ServerSpec], foreign: set[str]) -> _Seen:
    attempts = attempt_figures.run_attempts(journals)
    if not len(attempts):
        return _Seen()
    # Attempts at a server named by DNS, credited to the local sink at their address.
    at_sinks = by_address.credit_sinks(attempts, servers)
    named, kept = by_address.servers_kept(attempts, at_sinks)
    return _Seen(
        end=float(attempts["end"].max()),
        servers=named,
        kept=kept,
        onsets=fault_windows.trouble_onsets(attempts, foreign),
    )


def summarise(run: RunDir, figures_of: FiguresOf = attempt_figures.of) -> Summary:
    """The summary of a loaded run directory (no file is read here). `figures_of` makes
    the figures of this run's attempts alone (`report_child` hands one that takes them
    from the child that made them), for a run held whole; a run read a partition of its
    messages at a time (`RunDir.split`) adds them up share by share."""
    journals, scenario = run.journals, run.scenario
    run_id = run.run.run_id
    planned = attempt_figures.planned(run)
    servers = scenario.servers if scenario else []
    upstream_of = {s.name: upstream for s in servers if (upstream := _upstream(s.sink))}
    t0 = run.t0
    dns_served = scenario is not None and scenario.dns is not None

    def measured(window: fault_windows.FaultWindow, figures: Failover) -> Failover:
        """A DNS fault's window: its figures about a target server cleared."""
        if dns_windows.is_dns_window(window.target, dns_served):
            return dns_windows.as_dns_fault(figures)
        return figures

    sink_side: Received | None = None
    if run.has_sender_journal:
        whole = _whole(run, servers, t0)
        end, windows = whole.end, whole.windows
        counted = _counted(run, whole, planned, figures_of)
        counts = reconcile.total([Messages(**counted.messages)], planned)
        per_recipient = Recipients(**counted.recipients)

        def finish_fault(
            w: fault_windows.FaultWindow, tallied: failover.Tally, probes: pd.DataFrame
        ) -> Failover:
            return measured(w, failover.finish(w, tallied, probes, t0, end))

        failovers = [
            finish_fault(w, t, run.probes) for w, t in zip(windows, counted.failovers, strict=True)
        ]
        no_probes = run.probes.iloc[:0]  # probes carry no stream: no monitor timings per stream
        figures = (
            counted.figures.result(_schedule(run), t0, run.partial)
            if run.split is not None
            else _figures_of_whole(run, figures_of)
        )
        by_stream = streams.finish(
            counted.streams,
            run.split.streams if run.split is not None else counted.streams.order,
            scenario.campaign.stream_plan() if scenario else None,
            planned,
            windows,
            lambda w, tallied: finish_fault(w, tallied, no_probes),
            figures,
            (counted.failovers, failovers) if run.probes.empty else None,
        )
        errors = dict(sorted(counted.errors.items()))
        relay_part = relay.finish(journals.relay, counted.relay, windows, upstream_of, t0)
        mta = delivery.finish(counted.mta, windows)
        capacity_part = capacity.finish(
            counted.capacity if whole.attempted else None,
            capacity.step_windows(_schedule(run)),
            scenario.slo if scenario else [],
        )
        bounce_part = bounces.finish(counted.bounces, scenario, run_id, planned)
        auth_part = auth.finish(
            counted.auth,
            journals.refusals,
            auth.verifying_sinks(servers),
            windows,
            t0,
            campaign_only=True,
        )
        dns = (
            dns_follow.summarise(journals.faults, tally.joined(counted.dns), t0)
            if dns_served
            else None
        )
        attempted = whole.attempted
    else:
        # Another sender, no attempts: the messages and the faults from the receipts alone
        # (received.py); the parts built from attempts below come out empty, and
        # `needs_sender_journal` names them.
        attempts = attempt_figures.run_attempts(journals)
        windows = fault_windows.fault_windows(journals.faults)
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
        errors = metrics.errors(attempts)
        relay_part = relay.summarise(
            journals.relay, attempts, journals.receipts, windows, upstream_of, t0
        )
        mta = {}
        capacity_part = capacity.capacity(
            attempts, _schedule(run), t0, scenario.slo if scenario else []
        )
        bounce_part = bounces.summarise(
            attempts, attempt_figures.not_sent(run), scenario, run_id, planned
        )
        auth_part = auth.summarise(
            journals.receipts,
            journals.refusals,
            attempts,
            pd.DataFrame(),
            auth.verifying_sinks(servers),
            windows,
            t0,
            campaign_only=False,
        )
        dns = None
        attempted = False
    rules = scenario.slo if scenario else []
    summary = Summary(
        scenario=scenario.name if scenario else run.run.scenario,
        run_id=run_id,
        started_at=t0,
        duration_s=round(end - t0, 3) if attempted or sink_side else 0.0,
        partial=run.partial,
        messages=counts,
        recipients=per_recipient,
        throughput=figures.throughput,
        latency_ms=figures.latency,
        response_time_ms=figures.response_time,
        lateness_ms=figures.lateness,
        errors=errors,
        failovers=failovers,
        relay=relay_part,
        proxies=proxies.summarise(journals.proxy, upstream_of),
        mta=mta,
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
        capacity=capacity_part,
        backlog=figures.backlog,
        bounces=bounce_part,
        streams=by_stream,
        auth=auth_part,
        received=sink_side,
        dns=dns,
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


def _schedule(run: RunDir) -> Schedule | None:
    return run.scenario.campaign.build_schedule() if run.scenario else None


def _figures_of_whole(run: RunDir, figures_of: FiguresOf) -> attempt_figures.AttemptFigures:
    """The attempts' figures of a run held whole (one share)."""
    return figures_of(run, attempt_figures.run_attempts(run.journals))


def _counted(run: RunDir, whole: Whole, planned: int, figures_of: FiguresOf) -> Counted:
    """Every share's counts of the parts made per message, added."""
    journals, scenario = run.journals, run.scenario
    run_id = run.run.run_id
    servers = scenario.servers if scenario else []
    witness_of = {s.name: w for s in servers if scenario and (w := scenario.witness(s.name))}
    seen = proxies.witnessed_receipts(journals.proxy, set(witness_of.values()))
    # What a server maildrill does not own accepted: the proxy in front of it saw the 250.
    unobserved = frozenset(
        s.name for s in servers
        if scenario and not scenario.observed(s.name) and s.name not in witness_of
    )  # fmt: skip
    stuck = frozenset(journals.mta_queue["msg_id"]) if len(journals.mta_queue) else frozenset()
    events = journals.relay
    released = frozenset(events.loc[events["event"].isin(relay.DONE_EVENTS), "msg_id"])
    refused = downstream.refused_for_good(events, journals.refusals)
    mtas = {s.name for s in scenario.servers if s.postfix is not None} if scenario else set()
    plan = scenario.campaign.stream_plan() if scenario else None
    windows, end, t0 = whole.windows, whole.end, run.t0
    limit = capacity.p95_limit(scenario.slo if scenario else [])
    steps = capacity.step_windows(_schedule(run))
    dns_served = scenario is not None and scenario.dns is not None

    def count(part: int) -> Counted:
        """Share `part`'s counts (every frame it reads let go on return)."""
        share = run.share(part)
        mine = share.journals
        attempts = attempt_figures.run_attempts(mine)
        at_sinks = by_address.credit_sinks(attempts, servers)
        receipts = mine.receipts
        witnessed = share.mine(seen)
        if len(witnessed):
            receipts = pd.concat([receipts, witnessed], ignore_index=True)
        not_sent = attempt_figures.not_sent_rows(mine, run_id)
        per = reconcile.messages(attempts, receipts)
        suppressed = frozenset(not_sent["msg_id"]) if len(not_sent) else frozenset()
        faults = tuple(failover.tally(w, at_sinks, per, end) for w in windows)
        figures = attempt_figures.Part()
        if run.split is not None:
            figures.add(attempts)
        return Counted(
            messages=reconcile.count(
                per, 0, run_id, stuck, unobserved, released, refused, suppressed
            ).model_dump(),
            recipients=recipients.count(
                per,
                attempts,
                receipts,
                mine.mta_queue,
                run_id,
                unobserved,
                released,
                refused,
            ).model_dump(),
            failovers=faults,
            streams=streams.tally(
                attempts,
                per,
                not_sent,
                plan,
                planned,
                run_id,
                lambda frame, n, unsent: reconcile.count(
                    frame, n, run_id, stuck, unobserved, released, refused, unsent
                ),
                windows,
                lambda w, frame, messages: failover.tally(w, frame, messages, end),
                figures.times if run.split is not None else None,
                faults if at_sinks is attempts else None,
                whole_run=run.split is None,
            ),
            errors=metrics.errors(attempts),
            relay=relay.delays(journals.relay, attempts, mine.receipts),
            mta=delivery.tally(attempts, mine.receipts, per, mine.mta_queue, mtas, windows),
            capacity=capacity.tally(attempts, steps, t0, limit)
            if len(attempts)
            else (tuple(capacity.Step() for _ in steps)),
            bounces=bounces.tally(attempts, not_sent),
            auth=auth.tally(
                mine.receipts, share.mine(journals.refusals), attempts, per, campaign_only=True
            ),
            dns=[dns_follow.rows(journals.faults, attempts)] if dns_served else [],
            figures=figures,
        )

    counted: Counted = tally.total(run.each_share(count))
    return counted


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
    """summary.json, then (unless `reports` is false) plots, series, report.html/.md. A
    run too big to hold whole is read a partition of its messages at a time
    (`partitions.split`: its attempts and receipts dealt into a scratch directory, removed
    at the end). What can refuse the run is checked first, from its small files: a big
    run is not dealt into partitions only to be refused."""
    _made_by_run(run_dir)
    _outputs_are_not_links(run_dir)
    split = partitions.split(run_dir)
    if split is None:
        return _write(RunDir.load(run_dir), run_dir, reports)
    with split:
        return _write(RunDir.load(run_dir, split=split), run_dir, reports)


def _write(run: RunDir, run_dir: Path, reports: bool) -> Summary:
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


def _made_by_run(run_dir: Path) -> None:
    """A run `maildrill run` finished is whole: run.json and scenario.yaml come before any
    load, harness.json last. With a finished harness.json there, a missing first one was
    removed, and without scenario.yaml there are no SLOs to judge: the report would pass
    on nothing. (A `maildrill sinks` run has no run.json: Locust never ran.)"""
    harness = read_json(run_dir / "harness.json", HARNESS) or {}
    if harness.get("partial") is not False:
        return  # a `maildrill sinks` journal directory, or a run stopped before its end
    run = read_json(run_dir / "run.json", RUN) or {}
    sender = has_sender_journal(run_dir, run, harness)
    for name in ("run.json", "scenario.yaml") if sender else ("scenario.yaml",):
        if not (run_dir / name).exists():
            raise RunDirError(run_dir / name, "missing, yet harness.json says a run was here")


def _upstream(sink: SinkSpec) -> str | None:
    """A backup MX's or proxy's upstream: a server's name, or host:port."""
    address = sink.upstream_address
    if address is not None:
        return f"{address.host}:{address.port}"
    return sink.upstream_server or None
