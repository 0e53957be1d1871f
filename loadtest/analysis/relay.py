"""Backup-MX queues: depth over time, drain time after the primary recovers, and the
end-to-end delay of the messages that went through a backup (the summary's `BackupMx`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.histograms import Slots
from loadtest.analysis.summary_model import BackupMx, Percentiles

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
    return finish(relay, delays(relay, attempts, receipts), windows, upstream_of, t0)


def delays(relay: pd.DataFrame, attempts: pd.DataFrame, receipts: pd.DataFrame) -> dict[str, Slots]:
    """Per backup sink, the end-to-end delay of the messages of these attempts and
    receipts (a share of the run's, every row of their messages) that went through it:
    from the client's 250 to the first final receipt downstream (HDR slots, added over
    shares)."""
    if relay.empty:
        return {}
    final = receipts[receipts["outcome"].isin(("accepted", "dropped"))]
    first_final = final.groupby("msg_id", observed=True)["time"].min()
    accepted = attempts[attempts["outcome"] == "accepted"]
    accepted_end = accepted.groupby("msg_id", observed=True)["end"].min()
    out: dict[str, Slots] = {}
    for sink, events in relay.groupby("sink"):
        queued_ids = events.loc[events["event"] == "queued", "msg_id"].unique()
        through = (
            pd.Index(queued_ids).intersection(first_final.index).intersection(accepted_end.index)
        )
        delay = (first_final[through] - accepted_end[through]).clip(lower=0)
        out[str(sink)] = Slots.of(delay.to_numpy(dtype=float))
    return out


def finish(
    relay: pd.DataFrame,
    delay: dict[str, Slots],
    windows: list[FaultWindow],
    upstream_of: dict[str, str],
    t0: float,
) -> dict[str, BackupMx]:
    """Per backup sink, from the relay journal (read whole: it is the backup MXs' own, a
    row per queue event) and every share's `delays` added."""
    if relay.empty:
        return {}
    out: dict[str, BackupMx] = {}
    depths = depth_series(relay)
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
        out[str(sink)] = BackupMx(
            upstream=upstream,
            queued=int(counts.get("queued", 0)),
            forward_attempts_deferred=int(counts.get("deferred", 0)),
            forwarded=int(counts.get("forwarded", 0)),
            bounced=int(counts.get("bounced", 0)),
            left_in_queue=len(set(queued_ids) - set(done_ids)),
            max_depth=int(depth["depth"].max()) if len(depth) else 0,
            drain_s=drain_s,
            end_to_end_ms=Percentiles(**delay.get(str(sink), Slots()).percentiles_ms()),
            depth_series=[
                (round(float(t) - t0, 3), int(d))
                for t, d in zip(depth["time"], depth["depth"], strict=True)
            ][:: max(1, len(depth) // 500)],
        )
    return out
