"""Throughput, latency, lateness and reply codes from the attempts journal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99)


def percentiles_ms(seconds: pd.Series) -> dict[str, float | None]:
    if seconds.empty:
        return {**{f"p{p}": None for p in PERCENTILES}, "max": None}
    ms = seconds.to_numpy() * 1000.0
    out: dict[str, float | None] = {
        f"p{p}": round(float(np.percentile(ms, p)), 3) for p in PERCENTILES
    }
    out["max"] = round(float(ms.max()), 3)
    return out


def latency(attempts: pd.DataFrame) -> dict[str, Any]:
    """Latency (end - start) of accepted attempts, overall and per server."""
    ok = attempts[attempts["outcome"] == "accepted"]
    overall = percentiles_ms(ok["end"] - ok["start"])
    overall["per_server"] = {
        str(name): percentiles_ms(frame["end"] - frame["start"])
        for name, frame in ok.groupby("server")
    }
    return overall


def lateness(attempts: pd.DataFrame) -> dict[str, float | None]:
    """Start minus intended time of first attempts: how far the sender fell behind."""
    first = attempts[attempts["attempt"] == 1]
    return percentiles_ms((first["start"] - first["intended"]).clip(lower=0))


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
