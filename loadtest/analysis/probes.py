"""Availability as the health prober saw it, and how long a monitor takes to notice a fault.

Reads `probes*.csv` (`loadtest.prober`): one row per probe, `time` its start (epoch),
`latency_ms` to its answer or failure, so its end is `time + latency_ms / 1000`.

Per server: the share of probes that passed, and the down intervals: each run of failed
probes, from the start of its first probe (`start_s`; `noticed_s` is that probe's end) to
the start of the next probe that passed (`end_s`; none when the run ended down).

Per fault (a window of `fault_windows`; `failover.finish` puts them in its part):

- monitor_detection_s: onset to the end of the first failed probe of the target that
  ended after the onset and started before the fault cleared;
- monitor_recovery_s: clear to the end of the first passing probe of the target that
  started after the clear (only when the monitor saw the fault at all).

None means the monitor never noticed (a throttle, a drop after the dot: EHLO still
passes). Times in the output are seconds from run start (`t0`), durations in seconds.
`summarise` gives the summary's `Probes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtest.analysis import journals
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.journals import Damage
from loadtest.analysis.metrics import percentiles
from loadtest.analysis.summary_model import DownWindow, ProbedServer, Probes

COLUMNS = ("time", "server", "ok", "phase", "code", "outcome", "latency_ms", "error")


def load(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Damage]]:
    """All probe journals of a run, sorted by time, read as every journal is
    (`journals.read_journal`); (frame, what was left out per file)."""
    damage: dict[str, Damage] = {}
    probes = journals.load_kind(run_dir, "probes", damage)
    for column in COLUMNS:
        if column not in probes:
            probes[column] = pd.Series(dtype="float64")
    probes = probes.sort_values("time", kind="stable")
    probes["end"] = probes["time"] + probes["latency_ms"] / 1000.0
    probes["ok"] = probes["ok"].astype(bool)
    return probes.reset_index(drop=True), damage


def down_intervals(server_probes: pd.DataFrame) -> list[dict[str, Any]]:
    """Runs of failed probes of one server (epoch times; see the module docstring)."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for row in server_probes.sort_values("time", kind="stable").itertuples(index=False):
        if not row.ok:
            if current is None:
                current = {"start": row.time, "noticed": row.end, "end": None, "outcomes": {}}
                out.append(current)
            outcomes = current["outcomes"]
            outcomes[row.outcome] = outcomes.get(row.outcome, 0) + 1
        elif current is not None:
            current["end"] = row.time
            current = None
    return out


def availability(probes: pd.DataFrame, t0: float) -> dict[str, ProbedServer]:
    """Per server: probes, passed, availability (share passed), latency, down intervals."""
    out = {}
    for server, frame in probes.groupby("server", sort=True):
        ok = frame[frame["ok"]]
        down = []
        for d in down_intervals(frame):
            end = d["end"]
            down.append(
                DownWindow(
                    start_s=_rel(d["start"], t0),
                    noticed_s=_rel(d["noticed"], t0),
                    end_s=None if end is None else _rel(end, t0),
                    duration_s=None if end is None else round(end - d["start"], 6),
                    probes=sum(d["outcomes"].values()),
                    outcomes=d["outcomes"],
                )
            )
        out[str(server)] = ProbedServer(
            probes=len(frame),
            passed=len(ok),
            availability=round(len(ok) / len(frame), 6),
            first_s=_rel(frame["time"].min(), t0),
            last_s=_rel(frame["time"].max(), t0),
            latency_ms=percentiles(ok["latency_ms"]),
            down_s=round(float(sum(d.duration_s or 0.0 for d in down)), 6),
            down=down,
        )
    return out


def monitor_detection_s(window: FaultWindow, probes: pd.DataFrame) -> float | None:
    """Onset to the end of the first failed probe of the fault (see the module docstring)."""
    failed = _failed_during(window, probes)
    return None if failed.empty else round(float(failed["end"].min()) - window.onset, 6)


def monitor_recovery_s(window: FaultWindow, probes: pd.DataFrame) -> float | None:
    """Clear to the end of the first passing probe after it, when the monitor saw the fault."""
    if window.cleared is None or _failed_during(window, probes).empty:
        return None
    mine = probes[probes["server"] == window.target]
    passed = mine[mine["ok"] & (mine["time"] >= window.cleared)]
    return round(float(passed["end"].min()) - window.cleared, 6) if len(passed) else None


def _failed_during(window: FaultWindow, probes: pd.DataFrame) -> pd.DataFrame:
    """Failed probes of the target that ended after the onset and started before the clear."""
    mine = probes[probes["server"] == window.target]
    cleared = window.cleared if window.cleared is not None else np.inf
    return mine[~mine["ok"] & (mine["end"] >= window.onset) & (mine["time"] < cleared)]


def summarise(
    probes: pd.DataFrame,
    t0: float,
    interval_ms: int | None = None,
    timeout_ms: int | None = None,
) -> Probes:
    """summary.json's `probes`: settings and per-server availability (empty: no prober)."""
    return Probes(
        interval_ms=interval_ms if len(probes) else None,
        timeout_ms=timeout_ms if len(probes) else None,
        servers=availability(probes, t0),
    )


def _rel(epoch: float, t0: float) -> float:
    return round(float(epoch) - t0, 6)
