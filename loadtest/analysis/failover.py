"""Failover timing per fault, from the faults journal and the attempts journal.

Definitions (docs/metrics.md, Failovers): detection = onset (the sink's own clock) to the
end of the first failed attempt at the target; failover = onset to the end of the first
attempt accepted by another server; failback = clear to the end of the first attempt that
started after it and was accepted by the target; recovery = onset to the end of the first
1 s bin from the onset whose accepted count (all servers) is back at 90% of the rate in the
10 s before the fault. Times in the output are seconds from t0 (the campaign start).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from loadtest.analysis.metrics import percentiles, percentiles_ms

PRE_FAULT_WINDOW_S = 10.0
RECOVERY_SHARE = 0.9
# Sub-phases (flap's down phases) belong to their parent fault, not faults of their own.
SUBPHASE_SEPARATOR = "."


@dataclass
class FaultWindow:
    target: str
    kind: str
    fault_id: str
    onset: float  # epoch
    cleared: float | None  # epoch; None if still active at the end


@dataclass
class Failover:
    target: str
    kind: str
    onset_s: float
    cleared_s: float | None
    detection_s: float | None
    failover_s: float | None
    failback_s: float | None
    recovery_s: float | None
    longest_gap_s: float | None
    messages_delayed: int
    messages_failed: int
    added_latency_ms: dict[str, float | None]
    phases: dict[str, dict[str, Any]]  # before / during / after: latency and response time
    onset_source: str  # "sink journal" or "first failed attempt" (target not a sink)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fault_windows(faults: pd.DataFrame) -> list[FaultWindow]:
    """Start/stop pairs of faults (not steady behaviours, not flap sub-phases)."""
    if faults.empty:
        return []
    rows = faults[
        (faults.get("origin", "schedule") != "behaviour")
        & ~faults["kind"].astype(str).str.contains(SUBPHASE_SEPARATOR, regex=False)
    ].sort_values("time")
    windows: list[FaultWindow] = []
    open_by_id: dict[tuple[str, str], FaultWindow] = {}
    for row in rows.itertuples(index=False):
        key = (str(row.sink), str(getattr(row, "fault_id", "") or row.kind))
        if row.state == "start":
            window = FaultWindow(str(row.sink), str(row.kind), key[1], float(row.time), None)
            open_by_id[key] = window
            windows.append(window)
        elif row.state == "stop" and key in open_by_id:
            open_by_id.pop(key).cleared = float(row.time)
    return windows


def _first_end(frame: pd.DataFrame, after: float) -> float | None:
    ends = frame.loc[frame["end"] >= after, "end"]
    return float(ends.min()) if len(ends) else None


def analyse(
    window: FaultWindow, attempts: pd.DataFrame, per_message: pd.DataFrame, t0: float, end: float
) -> Failover:
    # Only the columns used here: filtering a million rows copies these, not the journal.
    used = ["msg_id", "server", "outcome", "intended", "start", "end", "worker"]
    attempts = attempts[[c for c in used if c in attempts]]
    failed = attempts[attempts["outcome"] != "accepted"]
    accepted = attempts[attempts["outcome"] == "accepted"]
    at_target = failed[failed["server"] == window.target]
    detection_end = _first_end(at_target, window.onset)
    failover_end = _first_end(accepted[accepted["server"] != window.target], window.onset)
    failback_end = (
        _first_end(
            accepted[(accepted["server"] == window.target) & (accepted["start"] >= window.cleared)],
            window.cleared,
        )
        if window.cleared is not None
        else None
    )
    until = window.cleared if window.cleared is not None else end
    # Messages the fault touched: a failed attempt at the target while it was on.
    touched = at_target[(at_target["end"] >= window.onset) & (at_target["start"] <= until + 1.0)]
    ids = touched["msg_id"].unique()
    affected = per_message[per_message.index.isin(ids)]  # hashes the few ids, not the index
    delayed = affected[affected["accepted"]]
    baseline = per_message[per_message["accepted"] & (per_message["accepted_end"] < window.onset)]
    base_delay = (
        float((baseline["accepted_end"] - baseline["intended"]).median()) if len(baseline) else 0.0
    )
    added = (delayed["accepted_end"] - delayed["intended"] - base_delay) * 1000.0
    return Failover(
        target=window.target,
        kind=window.kind,
        onset_s=round(window.onset - t0, 6),
        cleared_s=None if window.cleared is None else round(window.cleared - t0, 6),
        detection_s=_since(detection_end, window.onset),
        failover_s=_since(failover_end, window.onset),
        failback_s=_since(failback_end, window.cleared),
        recovery_s=_recovery(accepted, window.onset, end),
        longest_gap_s=_longest_gap(accepted["end"], window.onset, until),
        messages_delayed=len(delayed),
        messages_failed=int((~affected["accepted"]).sum()),
        added_latency_ms=percentiles(added.clip(lower=0)),
        phases=_phases(accepted, window.onset, until),
        onset_source="first failed attempt" if window.kind == "inferred" else "sink journal",
    )


def _phases(accepted: pd.DataFrame, onset: float, until: float) -> dict[str, dict[str, Any]]:
    """Latency and response time of attempts that ended before, during and after the fault."""

    out = {}
    for name, frame in (
        ("before", accepted[accepted["end"] < onset]),
        ("during", accepted[(accepted["end"] >= onset) & (accepted["end"] <= until)]),
        ("after", accepted[accepted["end"] > until]),
    ):
        out[name] = {
            "accepted": len(frame),
            "latency_ms": percentiles_ms(frame["end"] - frame["start"], frame),
            "response_time_ms": percentiles_ms(
                (frame["end"] - frame["intended"]).clip(lower=0), frame
            ),
        }
    return out


def _since(moment: float | None, origin: float | None) -> float | None:
    if moment is None or origin is None:
        return None
    return round(moment - origin, 6)


def _longest_gap(ends: pd.Series, start: float, stop: float) -> float | None:
    """Longest stretch inside [start, stop] with no accepted message anywhere."""
    if stop <= start:
        return None
    inside = np.sort(ends[(ends >= start) & (ends <= stop)].to_numpy())
    edges = np.concatenate(([start], inside, [stop]))
    return round(float(np.diff(edges).max()), 6)


def _recovery(accepted: pd.DataFrame, onset: float, end: float) -> float | None:
    ends = accepted["end"].to_numpy()
    before = ends[(ends >= onset - PRE_FAULT_WINDOW_S) & (ends < onset)]
    span = min(PRE_FAULT_WINDOW_S, onset - ends.min()) if len(ends) else 0.0
    if len(before) == 0 or span <= 0:
        return None
    pre_rate = len(before) / span
    seconds = np.arange(onset, end, 1.0)
    # Accepted per 1 s bin from the onset, all bins at once (binary search in sorted ends).
    ordered = np.sort(ends)
    in_bin = np.searchsorted(ordered, seconds + 1.0, "left") - np.searchsorted(
        ordered, seconds, "left"
    )
    recovered = np.flatnonzero(in_bin >= RECOVERY_SHARE * pre_rate)
    if len(recovered) == 0:
        return None
    return round(float(seconds[recovered[0]] + 1.0 - onset), 6)


def infer_windows(attempts: pd.DataFrame, foreign: set[str]) -> list[FaultWindow]:
    """For servers that are not maildrill sinks: onset = their first failed attempt.

    Only server failures count (refused, timeout, dropped, 4xx before RCPT); the window is
    open-ended, so failback is measured from the last of those failures.
    """
    windows: list[FaultWindow] = []
    if not foreign:
        return windows
    server_trouble = attempts["outcome"].isin(["refused", "timeout", "dropped"]) | (
        (attempts["outcome"] == "deferred")
        & attempts.get("phase", pd.Series("", index=attempts.index)).isin(
            ["connect", "greeting", "ehlo", "mail"]
        )
    )
    failed = attempts[server_trouble & attempts["server"].isin(foreign)]
    for server, frame in failed.groupby("server"):
        windows.append(FaultWindow(str(server), "inferred", "", float(frame["start"].min()), None))
    return windows
