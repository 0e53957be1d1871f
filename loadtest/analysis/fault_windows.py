"""When each fault was on: the windows the failover, probe, relay and MTA analyses measure
against. From the faults journal a sink keeps (`fault_windows`), or, for a server that is
not a sink and keeps none, inferred from the attempts (`infer_windows`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Sub-phases (flap's down phases) belong to their parent fault, not faults of their own.
SUBPHASE_SEPARATOR = "."


@dataclass
class FaultWindow:
    target: str
    kind: str
    fault_id: str
    onset: float  # epoch
    cleared: float | None  # epoch; None if still active at the end


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
