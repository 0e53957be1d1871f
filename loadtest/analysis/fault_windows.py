"""When each fault was on: the windows the failover, probe, relay and MTA analyses measure
against. From the faults journal a sink keeps (`fault_windows`), or, for a server that is
not a sink and keeps none, inferred from the attempts (`trouble_onsets`, `inferred`)."""

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
    """Start/stop pairs of faults (not steady behaviours, not flap sub-phases).

    A sink with `processes: N` journals each fault once per worker, under one fault id:
    that is one fault, on from the first worker's start to the last worker's stop (a
    window per worker would count every fault N times)."""
    if faults.empty:
        return []
    rows = faults[
        (faults.get("origin", "schedule") != "behaviour")
        & ~faults["kind"].astype(str).str.contains(SUBPHASE_SEPARATOR, regex=False)
    ].sort_values("time")
    windows: list[FaultWindow] = []
    by_id: dict[tuple[str, str], FaultWindow] = {}  # every fault with an id, across workers
    open_by_key: dict[tuple[str, str, str], FaultWindow] = {}  # per worker, not yet stopped
    for row in rows.itertuples(index=False):
        fault_id = str(getattr(row, "fault_id", "") or "")
        key = (str(row.sink), fault_id or str(row.kind))
        worker_key = (*key, str(getattr(row, "worker", "")))
        if row.state == "start":
            window = by_id.get(key) if fault_id else None
            if window is None:
                window = FaultWindow(str(row.sink), str(row.kind), key[1], float(row.time), None)
                windows.append(window)
                if fault_id:
                    by_id[key] = window
            else:
                window.onset = min(window.onset, float(row.time))
                window.cleared = None  # on again until this worker stops it too
            open_by_key[worker_key] = window
        elif row.state == "stop" and worker_key in open_by_key:
            window = open_by_key.pop(worker_key)
            if not any(w is window for w in open_by_key.values()):
                window.cleared = float(row.time)
    return windows


def inferred(onsets: dict[str, float]) -> list[FaultWindow]:
    """For servers that are not maildrill sinks, from `trouble_onsets` (of the whole run:
    the earliest of its shares'): onset = their first server failure. The window is
    open-ended, so failback is measured from the last of those failures."""
    return [FaultWindow(s, "inferred", "", onsets[s], None) for s in sorted(onsets)]


def trouble_onsets(attempts: pd.DataFrame, foreign: set[str]) -> dict[str, float]:
    """Per server of `foreign`, the start of its first server failure in these attempts."""
    if not foreign or not len(attempts):
        return {}
    server_trouble = attempts["outcome"].isin(["refused", "timeout", "dropped"]) | (
        (attempts["outcome"] == "deferred")
        & attempts.get("phase", pd.Series("", index=attempts.index)).isin(
            ["connect", "greeting", "ehlo", "mail"]
        )
    )
    failed = attempts[server_trouble & attempts["server"].isin(foreign)]
    return {
        str(server): float(frame["start"].min())
        for server, frame in failed.groupby("server", observed=True)
    }
