"""A run without the sender's journal: what the sinks and proxies alone show.

A user's own platform can send to `maildrill sinks SCENARIO` instead of Locust. Its run
directory then has receipts, refusals and faults journals (and proxy and relay journals),
but no attempts.csv: nobody recorded what was sent, when it was meant to go, or what the
sender was told. So the summary keeps to what a receipt proves:

- receipts per server over time, and the longest gap with no receipt (overall, per server,
  and during each fault);
- per fault window (faults-*.csv): failover = onset to the first receipt at another
  server, failback = clear to the first receipt at the target, recovery = onset to the
  first second whose receipts are back at 90 % of the rate before (`Failover`, with
  `measured_from: receipts`);
- duplicates: a message received more than once, known by its X-Maildrill-Id, or by its
  Message-ID when it has none (a receipt with neither is counted, not matched).

Timings count only receipts the sink acknowledged (not `dropped`: cut before the 250, the
sender was not told); duplicates count every delivery (a dropped one is in the mailbox).
A backup MX's `queued` receipt is a hop: it shows where mail went (failover), not a
delivery (duplicates). A sink behind a fault proxy counts for the proxy: the server the
sender addressed.

Everything else needs the sender's journal: `NEEDS_SENDER_JOURNAL` lists it, the summary
says so in `needs_sender_journal`, and an SLO rule on it is "not measured" (it fails,
with that reason), never a pass on zeros.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from loadtest.analysis import failover as failover_mod
from loadtest.analysis import proxies
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.probes import monitor_detection_s, monitor_recovery_s
from loadtest.analysis.summary_model import (
    ExactPercentiles,
    Failover,
    Messages,
    Received,
    ReceivedServer,
)
from loadtest.scenario import Scenario

# What a summary cannot say without the sender's journal (keys of summary.json; `[]` is
# every fault, `*` every backup MX). Those keys read 0 or null; SLOs on them are not
# measured (`slo.check`).
NEEDS_SENDER_JOURNAL: tuple[str, ...] = (
    *(f"messages.{name}" for name in ("planned", "attempted", "accepted", "failed", "lost",
                                       "phantom", "stranded", "not_sent", "in_flight",
                                       "unverified", "retried", "suppressed",
                                       "refused_downstream")),
    "throughput", "latency_ms", "response_time_ms", "lateness_ms", "errors",
    *(f"failovers[].{name}" for name in ("detection_s", "messages_delayed", "messages_failed",
                                          "added_latency_ms", "phases")),
    "relay.*.end_to_end_ms", "mta", "capacity", "backlog", "bounces", "recipients", "streams",
    "dns",
)  # fmt: skip

COLUMNS = ["time", "server", "key", "by_message_id", "outcome"]


def deliveries(
    receipts: pd.DataFrame, witnessed: pd.DataFrame, scenario: Scenario | None
) -> pd.DataFrame:
    """Every receipt (a sink's, or a proxy's witnessed 250 for a server maildrill does not
    own) as: time, server (the one the sender addressed), key (the message's identity: its
    X-Maildrill-Id, else its Message-ID, else ""), by_message_id, outcome; by time."""
    frames = [f for f in (receipts, witnessed) if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    rows = pd.concat(frames, ignore_index=True)
    ours = _text(rows, "msg_id")
    theirs = _text(rows, "message_id")
    front = _front_of(scenario)
    out = pd.DataFrame(
        {
            "time": rows["time"].to_numpy(dtype="float64"),
            "server": _addressed_all(_text(rows, "sink"), front),
            "key": ours.where(ours != "", theirs).to_numpy(),
            "by_message_id": ((ours == "") & (theirs != "")).to_numpy(),
            "outcome": _text(rows, "outcome").replace("", "accepted").to_numpy(),
        }
    )
    return out.sort_values("time", kind="stable", ignore_index=True)


def of_run(run: RunDir) -> tuple[pd.DataFrame, list[str]]:
    """A run's `deliveries` and the `servers` to report on (summary and report alike)."""
    scenario = run.scenario
    witnesses = (
        {w for s in scenario.servers if (w := scenario.witness(s.name))} if scenario else set()
    )
    witnessed = proxies.witnessed_receipts(run.journals.proxy, witnesses)
    frame = deliveries(run.journals.receipts, witnessed, scenario)
    return frame, servers(scenario, run.journal_servers, frame)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series("", index=frame.index, dtype="object")
    return frame[column].fillna("").astype(str)


def _front_of(scenario: Scenario | None) -> dict[str, str]:
    """Sink name -> the fault proxy in front of it (the scenario names the pair)."""
    if scenario is None:
        return {}
    return {
        s.upstream_name: s.name
        for s in scenario.servers
        if s.mode == "proxy" and s.upstream_name is not None
    }


def _addressed_all(sinks: pd.Series, front: dict[str, str]) -> np.ndarray:
    """`_addressed` of each row, worked out once per sink name."""
    codes, names = pd.factorize(sinks)
    addressed = np.array([_addressed(str(n), front) for n in names], dtype=object)
    return addressed[codes] if len(names) else np.array([], dtype=object)


def _addressed(sink: str, front: dict[str, str]) -> str:
    seen = {sink}
    while sink in front and front[sink] not in seen:  # proxies in a row, never a loop
        sink = front[sink]
        seen.add(sink)
    return sink


def servers(
    scenario: Scenario | None, journal_servers: Iterable[str], frame: pd.DataFrame
) -> list[str]:
    """The servers to report on: the scenario's local ones in its order (when it is there),
    then any other that kept a journal or has a receipt, by name; each as addressed."""
    front = _front_of(scenario)
    order: list[str] = []
    if scenario is not None:
        local = {s.name for s in scenario.servers if s.local}
        listed = [*scenario.ordered_servers(), *(s.name for s in scenario.servers)]
        order = [name for name in listed if name in local]
    others = sorted({*journal_servers, *frame["server"].astype(str)})
    named: list[str] = []
    for name in (*order, *others):
        addressed = _addressed(name, front)
        if addressed not in named:
            named.append(addressed)
    return named


def acknowledged(frame: pd.DataFrame) -> pd.DataFrame:
    """Receipts the sink answered 250 to (a dropped one was cut before its reply)."""
    return frame[frame["outcome"] != "dropped"]


def summarise(frame: pd.DataFrame, names: Sequence[str], t0: float) -> Received:
    """The `received` part: receipts per server, gaps, duplicates by message id."""
    ok = acknowledged(frame)
    first = float(ok["time"].min()) if len(ok) else None
    last = float(ok["time"].max()) if len(ok) else None
    delivered = frame[(frame["outcome"] != "queued") & (frame["key"] != "")]
    copies = delivered.groupby("key").size()
    by_message_id = delivered.loc[delivered["by_message_id"].astype(bool), "key"].nunique()
    per_server = {}
    for name in names:
        mine = frame[frame["server"] == name]
        times = acknowledged(mine)["time"]
        per_server[name] = ReceivedServer(
            receipts=len(times),
            dropped=int((mine["outcome"] == "dropped").sum()),
            first_s=_from(times.min() if len(times) else None, t0),
            last_s=_from(times.max() if len(times) else None, t0),
            longest_gap_s=_gap(times, first, last),
        )
    return Received(
        receipts=len(frame),
        messages=len(copies),
        duplicates=int((copies > 1).sum()),
        extra_copies=int((copies - 1).sum()),
        by_message_id=int(by_message_id),
        unidentified=int(((frame["key"] == "") & (frame["outcome"] != "queued")).sum()),
        longest_gap_s=_gap(ok["time"], first, last),
        servers=per_server,
    )


def _from(moment: float | None, t0: float) -> float | None:
    return None if moment is None else round(float(moment) - t0, 6)


def _gap(times: pd.Series, first: float | None, last: float | None) -> float | None:
    if first is None or last is None:
        return None
    return failover_mod.longest_gap(times.to_numpy(dtype="float64"), first, last)


def messages(received: Received) -> Messages:
    """The `messages` part as far as receipts go: received and duplicates; every count of
    what was sent reads 0 and is listed in NEEDS_SENDER_JOURNAL."""
    return Messages(
        planned=0, attempted=0, accepted=0, failed=0, received_unique=received.messages,
        lost=0, duplicates=received.duplicates, phantom=0, stranded=0, not_sent=0,
        in_flight=0, unverified=0, retried=0,
    )  # fmt: skip


def analyse(
    window: FaultWindow,
    frame: pd.DataFrame,
    names: Sequence[str],
    probes: pd.DataFrame,
    t0: float,
    end: float,
) -> Failover:
    """One fault, timed by receipts (the module docstring has the definitions)."""
    ok = acknowledged(frame)
    after = ok[ok["time"] >= window.onset]
    elsewhere = after.loc[after["server"] != window.target, "time"]
    back = (
        ok.loc[(ok["server"] == window.target) & (ok["time"] >= window.cleared), "time"]
        if window.cleared is not None
        else ok["time"].iloc[:0]
    )
    until = window.cleared if window.cleared is not None else end
    since = failover_mod.since
    times = ok["time"].to_numpy(dtype="float64")
    return Failover(
        target=window.target,
        kind=window.kind,
        onset_s=round(window.onset - t0, 6),
        cleared_s=None if window.cleared is None else round(window.cleared - t0, 6),
        detection_s=None,
        failover_s=since(float(elsewhere.min()) if len(elsewhere) else None, window.onset),
        failback_s=since(float(back.min()) if len(back) else None, window.cleared),
        recovery_s=failover_mod.recovery(
            times, float(times.min()) if len(times) else None, window.onset, end
        ),
        longest_gap_s=failover_mod.longest_gap(times, window.onset, until),
        messages_delayed=0,
        messages_failed=0,
        added_latency_ms=ExactPercentiles(p50=None, p95=None, max=None),
        phases={},
        onset_source="sink journal",
        monitor_detection_s=monitor_detection_s(window, probes),
        monitor_recovery_s=monitor_recovery_s(window, probes),
        measured_from="receipts",
        longest_gap_by_server_s=failover_mod.gaps_by_server(
            ok, list(names), window.onset, until, column="time"
        ),
    )


def last_moment(frames: Iterable[pd.DataFrame], default: float) -> float:
    """The last row any of these journals has (the run's end, without attempts)."""
    lasts = [float(np.nanmax(f["time"].to_numpy(dtype="float64"))) for f in frames if len(f)]
    return max(lasts) if lasts else default
