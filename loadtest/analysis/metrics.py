"""Throughput, latency, lateness and reply codes from the attempts journal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loadtest.analysis import histograms


def percentiles_ms(
    seconds: pd.Series, frame: pd.DataFrame | None = None
) -> dict[str, float | None]:
    """HDR percentiles of durations in seconds, merged over the frame's workers."""
    groups = None
    if frame is not None and "worker" in frame:
        groups = frame["worker"].astype(str).to_numpy()
    return histograms.percentiles_ms(seconds.to_numpy(dtype=float), groups)


def latency(attempts: pd.DataFrame) -> dict[str, Any]:
    """Service time (end - start) of accepted attempts, overall and per server."""
    ok = attempts[attempts["outcome"] == "accepted"]
    overall: dict[str, Any] = percentiles_ms(ok["end"] - ok["start"], ok)
    overall["per_server"] = {
        str(name): percentiles_ms(frame["end"] - frame["start"], frame)
        for name, frame in ok.groupby("server")
    }
    return overall


def response_time(attempts: pd.DataFrame) -> dict[str, float | None]:
    """End of the accepted attempt minus the message's intended send time.

    The open-model figure: it includes the wait a stalled server or a failover caused,
    which latency alone would omit (coordinated omission).
    """
    ok = attempts[attempts["outcome"] == "accepted"]
    return percentiles_ms((ok["end"] - ok["intended"]).clip(lower=0), ok)


def lateness(attempts: pd.DataFrame) -> dict[str, float | None]:
    """Start minus intended time of first attempts: how far the sender fell behind."""
    first = attempts[attempts["attempt"] == 1]
    return percentiles_ms((first["start"] - first["intended"]).clip(lower=0), first)


def throughput(attempts: pd.DataFrame) -> dict[str, Any]:
    """Accepted messages per second by end time: mean over the active span, peak 1 s bin."""
    ok = attempts[attempts["outcome"] == "accepted"]
    if ok.empty:
        return {"mean_msgs_per_s": 0.0, "peak_msgs_per_s": 0.0, "per_server": {}}
    first = attempts["start"].min()
    last = ok["end"].max()
    span = max(1.0, last - first)
    bins = np.floor(ok["end"] - first).astype(int)
    per_server = {}
    for name, frame in ok.groupby("server"):
        per_server[str(name)] = {
            "accepted": len(frame),
            "mean_msgs_per_s": round(len(frame) / span, 3),
        }
    return {
        "mean_msgs_per_s": round(len(ok) / span, 3),
        "peak_msgs_per_s": float(bins.value_counts().max()),
        "per_server": per_server,
    }


def errors(attempts: pd.DataFrame) -> dict[str, int]:
    """Failed attempts by '<code> <enhanced>', or by outcome and phase when no reply came."""
    failed = attempts[attempts["outcome"] != "accepted"]
    keys = []
    for row in failed.itertuples(index=False):
        code = row.code
        if code == code and code:  # not NaN, not 0
            keys.append(f"{int(code)} {row.enhanced or ''}".strip())
        else:
            keys.append(f"{row.outcome} at {getattr(row, 'phase', '?')}")
    return dict(sorted(pd.Series(keys, dtype=object).value_counts().items())) if keys else {}


def series(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Tidy 1 s bins from t0: accepted msgs and MB per server, attempts by outcome."""
    if attempts.empty:
        return pd.DataFrame(columns=["second", "server", "outcome", "attempts", "bytes"])
    frame = attempts.assign(second=np.floor(attempts["end"] - t0).astype(int))
    grouped = frame.groupby(["second", "server", "outcome"])
    return pd.DataFrame({"attempts": grouped.size(), "bytes": grouped["bytes"].sum()}).reset_index()
