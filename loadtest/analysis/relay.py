"""Backup-MX queues: depth over time, drain time after the primary recovers, and the
end-to-end delay of the messages that went through a backup (the summary's `BackupMx`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.metrics import percentiles_ms
from loadtest.analysis.summary_model import BackupMx

DONE_EVENTS = ("forwarded", "bounced")


def depth_series(relay: pd.DataFrame) -> pd.DataFrame:
    """(time, sink, depth) after each queued/forwarded/bounced event."""
    moves = relay[relay["event"].isin(("queued", *DONE_EVENTS))].sort_values("time")
    step = np.where(moves["event"] == "queued", 1, -1)
    return pd.DataFrame(
        {
            "time": moves["time"].to_numpy(),
            "sink": moves["sink"].to_numpy(),
            "depth": pd.Series(step).groupby(moves["sink"].to_numpy()).cumsum().to_numpy(),
        }
    )


def summarise(
    relay: pd.DataFrame,
    attempts: pd.DataFrame,
    receipts: pd.DataFrame,
    windows: list[FaultWindow],
    upstream_of: dict[str, str],
    t0: float,
) -> dict[str, BackupMx]:
    """Per backup sink: counts, max depth, drain time, end-to-end delay through it."""
    if relay.empty:
        return {}
    out: dict[str, BackupMx] = {}
    depths = depth_series(relay)
    final = receipts[receipts["outcome"].isin(("accepted", "dropped"))]
    first_final = final.groupby("msg_id")["time"].min()
    accepted = attempts[attempts["outcome"] == "accepted"].groupby("msg_id")["end"].min()
    for sink, events in relay.groupby("sink"):
        counts = events["event"].value_counts()
        depth = depths[depths["sink"] == sink]
        queued_ids = events.loc[events["event"] == "queued", "msg_id"].unique()
        done_ids = events.loc[events["event"].isin(DONE_EVENTS), "msg_id"].unique()
        upstream = upstream_of.get(str(sink))
        clears = [w.cleared for w in windows if w.target == upstream and w.cleared is not None]
        drain_s = None
        if clears and len(depth):
            clear = max(clears)
            emptied = depth[(depth["time"] >= clear) & (depth["depth"] == 0)]
            if len(emptied):
                drain_s = round(float(emptied["time"].min() - clear), 6)
        through = pd.Index(queued_ids).intersection(first_final.index).intersection(accepted.index)
        delay = (first_final[through] - accepted[through]).clip(lower=0)
        out[str(sink)] = BackupMx(
            upstream=upstream,
            queued=int(counts.get("queued", 0)),
            forward_attempts_deferred=int(counts.get("deferred", 0)),
            forwarded=int(counts.get("forwarded", 0)),
            bounced=int(counts.get("bounced", 0)),
            left_in_queue=len(set(queued_ids) - set(done_ids)),
            max_depth=int(depth["depth"].max()) if len(depth) else 0,
            drain_s=drain_s,
            end_to_end_ms=percentiles_ms(delay),
            depth_series=[
                (round(float(t) - t0, 3), int(d))
                for t, d in zip(depth["time"], depth["depth"], strict=True)
            ][:: max(1, len(depth) // 500)],
        )
    return out
