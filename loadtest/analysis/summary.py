"""summary.json: the numbers tools and CI read (its keys: docs/run-directory.md; each
number defined in docs/metrics.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.analysis import (
    capacity,
    delivery,
    failover,
    metrics,
    probes,
    proxies,
    reconcile,
    relay,
    report,
    slo,
)
from loadtest.analysis.journals import Damage, Journals, load
from loadtest.analysis.rundir import HARNESS, PREFLIGHT, RunDirError, read_json, read_scenario
from loadtest.scenario import Scenario, SinkSpec


def scenario_of(run_dir: Path) -> Scenario | None:
    """scenario.yaml as run (None without one); ScenarioError when it is damaged."""
    return read_scenario(run_dir)


def build(journals: Journals, scenario: Scenario | None) -> dict[str, Any]:
    run_dir = journals.run_dir
    harness = read_json(run_dir / "harness.json", HARNESS) or {}
    attempts = journals.attempts
    run_id = str(journals.run.get("run_id", ""))
    if run_id and len(attempts) and "run_id" in attempts:
        attempts = attempts[attempts["run_id"] == run_id]
    planned = int(journals.run.get("planned") or 0)
    if not planned and scenario is not None:
        planned = scenario.campaign.build_schedule().total
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
    per = reconcile.messages(attempts, receipts)
    stuck = frozenset(journals.mta_queue["msg_id"]) if len(journals.mta_queue) else frozenset()
    events = journals.relay
    released = frozenset(events.loc[events["event"].isin(relay.DONE_EVENTS), "msg_id"])
    bounced = frozenset(events.loc[events["event"] == "bounced", "msg_id"])
    counts = reconcile.count(per, planned, run_id, stuck, unobserved, released, bounced)
    t0 = journals.t0
    end = float(attempts["end"].max()) if len(attempts) else t0
    windows = failover.fault_windows(journals.faults)
    if scenario is not None:
        # Servers maildrill does not own keep no faults journal: infer their trouble.
        foreign = {s.name for s in scenario.servers if not s.local and s.postfix is None}
        windows += failover.infer_windows(attempts, foreign)
    # What the health prober saw (loadtest.prober): how long a monitor takes to notice.
    probe_frame, probe_damage = probes.load(run_dir)
    failovers = [
        failover.analyse(w, attempts, per, t0, end).as_dict()
        | probes.monitor_timing(w, probe_frame)
        for w in windows
    ]
    backups = relay.summarise(journals.relay, attempts, journals.receipts, windows, upstream_of, t0)
    summary: dict[str, Any] = {
        "scenario": scenario.name if scenario else journals.run.get("scenario", ""),
        "run_id": run_id,
        "started_at": t0,
        "duration_s": round(end - t0, 3) if len(attempts) else 0.0,
        "partial": bool(harness.get("partial", not harness)),
        "messages": counts.as_dict(),
        "throughput": metrics.throughput(attempts),
        "latency_ms": metrics.latency(attempts),
        "response_time_ms": metrics.response_time(attempts),
        "lateness_ms": metrics.lateness(attempts),
        "errors": metrics.errors(attempts),
        "failovers": failovers,
        "relay": backups,
        "proxies": proxies.summarise(journals.proxy, upstream_of),
        "mta": delivery.summarise(
            attempts,
            journals.receipts,
            per,
            journals.mta_queue,
            {s.name for s in scenario.servers if s.postfix is not None} if scenario else set(),
            windows,
        ),
        "probes": probes.summarise(
            probe_frame,
            t0,
            scenario.probe_interval_ms if scenario else None,
            scenario.probe_timeout_ms if scenario else None,
        ),
        "preflight": _preflight(run_dir),
        "journal_problems": journal_problems(
            journals.damage | probe_damage, _writer_may_have_died(harness)
        ),
        "harness": {k: v for k, v in harness.items() if k != "partial"},
    }
    rules = scenario.slo if scenario else []
    schedule = scenario.campaign.build_schedule() if scenario else None
    summary["capacity"] = capacity.capacity(attempts, schedule, t0, rules)
    torn_ok = _writer_may_have_died(harness)
    unreadable = {
        name: (d.kind, d.unreadable + d.missing + int(d.torn and not torn_ok))
        for name, d in journals.damage.items()
    }
    summary["slo"] = slo.check(
        rules, slo.metric_values(summary), faults=len(failovers), unreadable=unreadable
    )
    if harness.get("aborted_by"):  # a drill without its fault passes nothing
        summary["slo"]["passed"] = False
    return summary


def _writer_may_have_died(harness: dict[str, Any]) -> bool:
    """Whether a torn last line can be a writer killed mid-write: in a run interrupted (or
    without a harness record), or one where a sink died or a Locust worker was lost. A run
    that finished cleanly closed every journal whole: a torn line there is a file cut
    short, and counts as an unreadable line (the lines after it are gone)."""
    return bool(
        harness.get("partial", not harness)
        or harness.get("sink_deaths")
        or harness.get("workers_lost")
    )


def journal_problems(damage: dict[str, Damage], torn_trusted: bool) -> dict[str, Any]:
    """What the journals left out: every line skipped per file; the complete lines that
    could not be read (their kind, count and first line numbers) and the lines cut off since
    the run ended (shorter than harness.json recorded), both of which keep the SLOs counted
    from that kind of journal from passing; the files whose last line is torn, and
    whether that is a writer killed mid-write (trusted) or a file cut short (not)."""
    return {
        "skipped_lines": {name: d.skipped for name, d in sorted(damage.items())},
        "unreadable_lines": {
            name: d.as_dict() for name, d in sorted(damage.items()) if d.unreadable
        },
        "missing_lines": {
            name: {"kind": d.kind, "lines": d.missing}
            for name, d in sorted(damage.items())
            if d.missing
        },
        "torn_last_line": sorted(name for name, d in damage.items() if d.torn),
        "torn_last_line_trusted": torn_trusted,
    }


def write(run_dir: Path, reports: bool = True) -> dict[str, Any]:
    """summary.json, then (unless `reports` is false) plots, series, report.html/.md."""
    journals, scenario = report.compact(load(run_dir)), scenario_of(run_dir)
    _made_by_run(run_dir)
    _outputs_are_not_links(run_dir)
    summary = build(journals, scenario)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    if reports:
        report.write(run_dir, summary, journals, scenario)
    return summary


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
    on nothing."""
    harness = read_json(run_dir / "harness.json", HARNESS)
    if harness is None or harness.get("partial") is not False:
        return  # a `maildrill sinks` journal directory, or a run stopped before its end
    for name in ("run.json", "scenario.yaml"):
        if not (run_dir / name).exists():
            raise RunDirError(run_dir / name, "missing, yet harness.json says a run was here")


def _upstream(sink: SinkSpec) -> str | None:
    """A backup MX's or proxy's upstream: a server's name, or host:port."""
    address = sink.upstream_address
    if address is not None:
        return f"{address.host}:{address.port}"
    return sink.upstream_server or None


def _preflight(run_dir: Path) -> dict[str, Any] | None:
    """The pre-flight check's verdict (preflight.json has the servers' facts too)."""
    data = read_json(run_dir / "preflight.json", PREFLIGHT)
    if data is None:
        return None
    return {key: data.get(key) for key in ("ok", "reference", "flags", "notes")}


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
