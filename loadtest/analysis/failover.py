"""Failover timing per fault (a window of `fault_windows`), from the attempts journal, and
how long the health prober took to notice it (`probes`).

Definitions (docs/metrics.md, Failovers): detection = onset (the sink's own clock) to the
end of the first failed attempt at the target; failover = onset to the end of the first
attempt accepted by another server; failback = clear to the end of the first attempt that
started after it and was accepted by the target; recovery = onset to the end of the first
1 s bin from the onset whose accepted count (all servers) is back at 90% of the rate in the
10 s before the fault. Times in the output are seconds from t0 (the campaign start).
`tally` counts one share of the messages (all of them, or a partition), `finish` makes one
fault's whole part of the summary, `summary_model.Failover`, from every share's tally added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.histograms import Slots
from loadtest.analysis.metrics import percentiles
from loadtest.analysis.probes import monitor_detection_s, monitor_recovery_s
from loadtest.analysis.summary_model import Failover, FaultPhase, Percentiles
from loadtest.analysis.tally import ADD, earliest, summed

PRE_FAULT_WINDOW_S = 10.0
RECOVERY_SHARE = 0.9


def _first_end(frame: pd.DataFrame, after: float) -> float | None:
    ends = frame.loc[frame["end"] >= after, "end"]
    return float(ends.min()) if len(ends) else None


@dataclass
class Phase:
    """A phase's accepted attempts (before, during or after the fault), as counts."""

    accepted: int = 0
    latency: Slots = field(default_factory=Slots)
    response_time: Slots = field(default_factory=Slots)


@dataclass
class Tally:
    """What one share of the messages says of one fault (`tally`), added over shares
    (`loadtest.analysis.tally`): first instants, counts, HDR slots, and the instants and
    delays the exact figures need: the accepted attempts' ends while the fault was on, by
    server (the longest gaps); how many ended in the PRE_FAULT_WINDOW_S before the onset,
    and in each second from the onset on (the recovery: counts, so an hour's soak after a
    fault cleared keeps 3,600 numbers, not every end); per message, the delay of those
    accepted before the fault and of those it delayed."""

    detection_end: float | None = field(default=None, metadata={ADD: earliest})
    failover_end: float | None = field(default=None, metadata={ADD: earliest})
    failback_end: float | None = field(default=None, metadata={ADD: earliest})
    first_accepted_end: float | None = field(default=None, metadata={ADD: earliest})
    ends: dict[str, list[np.ndarray]] = field(default_factory=dict)  # on: by server
    pre_fault: int = 0  # accepted ends in the PRE_FAULT_WINDOW_S before the onset
    per_second: np.ndarray | None = field(default=None, metadata={ADD: summed})  # from onset
    servers: set[str] = field(default_factory=set)
    baseline: list[np.ndarray] = field(default_factory=list)  # accepted_end - intended
    delayed: list[np.ndarray] = field(default_factory=list)  # the same, of those delayed
    failed: int = 0
    phases: dict[str, Phase] = field(default_factory=dict)


def tally(
    window: FaultWindow, attempts: pd.DataFrame, per_message: pd.DataFrame, end: float
) -> Tally:
    """One share's part of a fault's figures (`end`: the run's last attempt's end)."""
    # Only the columns used here: filtering a million rows copies these, not the journal.
    used = ["msg_id", "server", "outcome", "intended", "start", "end", "worker"]
    attempts = attempts[[c for c in used if c in attempts]]
    failed = attempts[attempts["outcome"] != "accepted"]
    accepted = attempts[attempts["outcome"] == "accepted"]
    at_target = failed[failed["server"] == window.target]
    until = window.cleared if window.cleared is not None else end
    # Messages the fault touched: a failed attempt at the target while it was on.
    touched = at_target[(at_target["end"] >= window.onset) & (at_target["start"] <= until + 1.0)]
    ids = touched["msg_id"].unique()
    affected = per_message[per_message.index.isin(ids)]  # hashes the few ids, not the index
    # (A numpy mask: an empty Series of objects would select columns, not rows.)
    delayed = affected[affected["accepted"].to_numpy(dtype=bool)]
    # Only the two columns the baseline needs: the whole per-message table, copied, was
    # the largest allocation here (77 bytes a message; issue 18).
    # (A numpy mask: a Series one makes pandas hash the per-message index, and keep it.)
    before = (per_message["accepted"] & (per_message["accepted_end"] < window.onset)).to_numpy()
    baseline = per_message.loc[before, ["accepted_end", "intended"]]
    ended = accepted["end"].to_numpy(dtype="float64")
    on = accepted[((ended >= window.onset) & (ended <= until))]
    return Tally(
        detection_end=_first_end(at_target, window.onset),
        failover_end=_first_end(accepted[accepted["server"] != window.target], window.onset),
        failback_end=_first_end(
            accepted[(accepted["server"] == window.target) & (accepted["start"] >= window.cleared)],
            window.cleared,
        )
        if window.cleared is not None
        else None,
        first_accepted_end=float(accepted["end"].min()) if len(accepted) else None,
        ends={
            str(server): [frame["end"].to_numpy(dtype="float64")]
            for server, frame in on.groupby("server", observed=True)
        },
        pre_fault=pre_fault_count(ended, window.onset),
        per_second=per_second(ended, window.onset, end),
        servers={str(s) for s in attempts["server"].unique()},
        baseline=[(baseline["accepted_end"] - baseline["intended"]).to_numpy(dtype="float64")],
        delayed=[(delayed["accepted_end"] - delayed["intended"]).to_numpy(dtype="float64")],
        failed=int((~affected["accepted"].astype(bool)).sum()),
        phases={
            name: Phase(
                accepted=len(frame),
                latency=Slots.of((frame["end"] - frame["start"]).to_numpy(dtype=float)),
                response_time=Slots.of(
                    (frame["end"] - frame["intended"]).clip(lower=0).to_numpy(dtype=float)
                ),
            )
            for name, frame in (
                ("before", accepted[accepted["end"] < window.onset]),
                (
                    "during",
                    accepted[(accepted["end"] >= window.onset) & (accepted["end"] <= until)],
                ),
                ("after", accepted[accepted["end"] > until]),
            )
        },
    )


def finish(
    window: FaultWindow, counted: Tally, probes: pd.DataFrame, t0: float, end: float
) -> Failover:
    """One fault's part of the summary, from every share's `tally` added."""
    until = window.cleared if window.cleared is not None else end
    by_server = {s: np.concatenate(parts) for s, parts in counted.ends.items()}
    ends = np.concatenate(list(by_server.values())) if by_server else np.empty(0)
    baseline = pd.Series(np.concatenate(counted.baseline) if counted.baseline else np.empty(0))
    base_delay = float(baseline.median()) if len(baseline) else 0.0
    delayed = pd.Series(np.concatenate(counted.delayed) if counted.delayed else np.empty(0))
    added = (delayed - base_delay) * 1000.0
    no_ends = np.empty(0)
    return Failover(
        target=window.target,
        kind=window.kind,
        onset_s=round(window.onset - t0, 6),
        cleared_s=None if window.cleared is None else round(window.cleared - t0, 6),
        detection_s=since(counted.detection_end, window.onset),
        failover_s=since(counted.failover_end, window.onset),
        failback_s=since(counted.failback_end, window.cleared),
        recovery_s=recovered(
            counted.pre_fault,
            counted.per_second if counted.per_second is not None else np.empty(0, np.int64),
            counted.first_accepted_end,
            window.onset,
            end,
        ),
        longest_gap_s=longest_gap(ends, window.onset, until),
        messages_delayed=len(delayed),
        messages_failed=counted.failed,
        added_latency_ms=percentiles(added.clip(lower=0)),
        phases={
            name: FaultPhase(
                accepted=phase.accepted,
                latency_ms=Percentiles(**phase.latency.percentiles_ms()),
                response_time_ms=Percentiles(**phase.response_time.percentiles_ms()),
            )
            for name in ("before", "during", "after")
            for phase in [counted.phases.get(name, Phase())]
        },
        onset_source="first failed attempt" if window.kind == "inferred" else "sink journal",
        monitor_detection_s=monitor_detection_s(window, probes),
        monitor_recovery_s=monitor_recovery_s(window, probes),
        measured_from="attempts",
        longest_gap_by_server_s={
            s: longest_gap(by_server.get(s, no_ends), window.onset, until)
            for s in sorted(counted.servers)
        },
    )


def since(moment: float | None, origin: float | None) -> float | None:
    if moment is None or origin is None:
        return None
    return round(moment - origin, 6)


def longest_gap(ends: np.ndarray, start: float, stop: float) -> float | None:
    """Longest stretch inside [start, stop] with none of these times (accepted attempts'
    ends, or receipts) in it."""
    if stop <= start:
        return None
    inside = np.sort(ends[(ends >= start) & (ends <= stop)])
    edges = np.concatenate(([start], inside, [stop]))
    return round(float(np.diff(edges).max()), 6)


def gaps_by_server(
    frame: pd.DataFrame, servers: list[str], start: float, stop: float, column: str = "end"
) -> dict[str, float | None]:
    """`longest_gap` at each server (a server with nothing there: the whole stretch)."""
    by_server = frame["server"]  # compared as it is: a category is integer work
    return {
        s: longest_gap(frame.loc[by_server == s, column].to_numpy(dtype="float64"), start, stop)
        for s in servers
    }


def recovery(ends: np.ndarray, first: float | None, onset: float, end: float) -> float | None:
    """Onset to the end of the first 1 s bin whose count of accepted `ends` is back at
    RECOVERY_SHARE of the rate in the PRE_FAULT_WINDOW_S before the onset. `ends` holds
    those from PRE_FAULT_WINDOW_S before the onset on at least; `first` is the earliest."""
    return recovered(pre_fault_count(ends, onset), per_second(ends, onset, end), first, onset, end)


def pre_fault_count(ends: np.ndarray, onset: float) -> int:
    """How many `ends` fall in the PRE_FAULT_WINDOW_S before the onset."""
    return int(np.count_nonzero((ends >= onset - PRE_FAULT_WINDOW_S) & (ends < onset)))


def per_second(ends: np.ndarray, onset: float, end: float) -> np.ndarray:
    """How many `ends` fall in each 1 s bin from the onset to the run's end (counts: the
    shares' add up to the run's)."""
    seconds = np.arange(onset, end, 1.0)
    ordered = np.sort(ends[ends >= onset])  # binary search in sorted ends: all bins at once
    return np.asarray(
        np.searchsorted(ordered, seconds + 1.0, "left") - np.searchsorted(ordered, seconds, "left"),
        dtype=np.int64,
    )


def recovered(
    pre_count: int, in_bin: np.ndarray, first: float | None, onset: float, end: float
) -> float | None:
    """`recovery` from its counts: `pre_count` ends before the onset, `in_bin` per second
    from it (`per_second`); `first`, the earliest accepted end."""
    span = min(PRE_FAULT_WINDOW_S, onset - first) if first is not None else 0.0
    if pre_count == 0 or span <= 0:
        return None
    pre_rate = pre_count / span
    seconds = np.arange(onset, end, 1.0)
    back = np.flatnonzero(in_bin >= RECOVERY_SHARE * pre_rate)
    if len(back) == 0:
        return None
    return round(float(seconds[back[0]] + 1.0 - onset), 6)
