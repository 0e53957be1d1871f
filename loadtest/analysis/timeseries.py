"""Tidy 1 s time series from the journals: pure functions, DataFrames in, DataFrames out.

Every series is binned on whole seconds from the run's t0 (`second` = floor(time - t0)):
completions by their end time, lateness by the message's intended time. The frames are
tidy (one row per second and server, or per second and reply) so they plot directly and
read back from `series/*.csv` in a run directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loadtest.outcomes import Outcome

ALL = "all"  # the `server` value of rows over every server
FAILED = tuple(o.value for o in Outcome if o is not Outcome.ACCEPTED)
PERCENTILES = (50, 90, 95, 99)
SERIES_DIR = "series"


def _seconds(times: pd.Series, t0: float) -> np.ndarray:
    # Journals keep microseconds: round first so a time equal to t0 never lands in -1.
    return np.floor(np.round(times.to_numpy(dtype="float64") - t0, 6)).astype("int64")


def servers(attempts: pd.DataFrame, receipts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second and server: accepted msgs/s and MB/s, attempts by outcome, connections.

    Columns: second, server, accepted, accepted_mb, attempts, one column per other outcome
    (deferred, rejected, refused, timeout, dropped, interrupted), connections_opened
    (attempts that opened a connection) and open_sessions (sink sessions from their first
    to their last received message: a lower bound on the connections open in that second;
    0 for servers that are not maildrill sinks). Every second from the first to the last
    is present for every server, zeros included.
    """
    columns = ["second", "server", "accepted", "accepted_mb", "attempts", *FAILED,
               "connections_opened", "open_sessions"]  # fmt: skip
    if attempts.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    second = _seconds(attempts["end"], t0)
    server = attempts["server"].astype(str).to_numpy()
    outcome = attempts["outcome"].astype(str).to_numpy()
    accepted = outcome == Outcome.ACCEPTED
    size = attempts["bytes"].to_numpy(dtype="float64") if "bytes" in attempts else 0.0
    opened = (
        attempts["new_connection"].fillna(0).to_numpy(dtype="float64")
        if "new_connection" in attempts
        else np.zeros(len(attempts))
    )
    frame = pd.DataFrame(
        {
            "second": second,
            "server": server,
            "outcome": outcome,
            "accepted_bytes": np.where(accepted, np.nan_to_num(size), 0.0),
            "opened": opened,
        }
    )
    keys = ["second", "server"]
    by_outcome = frame.groupby([*keys, "outcome"]).size().unstack("outcome", fill_value=0)
    by_outcome = by_outcome.reindex(columns=[Outcome.ACCEPTED.value, *FAILED], fill_value=0)
    sums = frame.groupby(keys)[["accepted_bytes", "opened"]].sum()
    names = sorted(set(server))
    grid = pd.MultiIndex.from_product(
        [np.arange(second.min(), second.max() + 1), names], names=keys
    )
    out = by_outcome.join(sums).reindex(grid, fill_value=0)
    out["attempts"] = out[[Outcome.ACCEPTED.value, *FAILED]].sum(axis=1)
    out["accepted_mb"] = (out["accepted_bytes"] / 1e6).round(6)
    out["connections_opened"] = out["opened"].astype("int64")
    out["open_sessions"] = _open_sessions(receipts, t0, grid)
    return out.reset_index()[columns]


def _open_sessions(receipts: pd.DataFrame, t0: float, grid: pd.MultiIndex) -> np.ndarray:
    """Sessions spanning each second, per sink, from their first and last receipts."""
    if receipts.empty or "session" not in receipts:
        return np.zeros(len(grid), dtype="int64")
    spans = receipts.groupby(["sink", "session"])["time"].agg(["min", "max"])
    first = pd.Series(_seconds(spans["min"], t0), index=spans.index.get_level_values("sink"))
    last = pd.Series(_seconds(spans["max"], t0), index=spans.index.get_level_values("sink"))
    # +1 where a session starts, -1 the second after it ends; a running sum per sink.
    events = pd.concat(
        [
            pd.DataFrame({"server": first.index, "second": first.to_numpy(), "delta": 1}),
            pd.DataFrame({"server": last.index, "second": last.to_numpy() + 1, "delta": -1}),
        ]
    )
    delta = events.groupby(["second", "server"])["delta"].sum()
    seconds = grid.get_level_values("second")
    lo, hi = int(seconds.min()), int(seconds.max())
    delta = delta.reset_index()
    before = delta[delta["second"] < lo].groupby("server")["delta"].sum()
    inside = delta[(delta["second"] >= lo) & (delta["second"] <= hi)]
    table = inside.pivot_table(
        index="second", columns="server", values="delta", aggfunc="sum", fill_value=0
    ).reindex(index=np.arange(lo, hi + 1), fill_value=0)
    running = table.cumsum() + before.reindex(table.columns, fill_value=0)
    stacked = running.stack()
    stacked.index.names = ["second", "server"]
    return stacked.reindex(grid, fill_value=0).to_numpy(dtype="int64")


def _percentile_table(values_ms: pd.Series, keys: list[pd.Series | np.ndarray]) -> pd.DataFrame:
    grouped = values_ms.groupby(keys)
    table = grouped.quantile([p / 100 for p in PERCENTILES]).unstack()
    table.columns = [f"p{p}" for p in PERCENTILES]
    table.insert(0, "count", grouped.size())
    table["max"] = grouped.max()
    return table.round(3)


def latency(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time), overall (`server` = "all") and per server: latency of
    accepted attempts in ms. Columns: second, server, count, p50, p90, p95, p99, max."""
    columns = ["second", "server", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    ok = attempts[attempts["outcome"] == Outcome.ACCEPTED.value]
    if ok.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    ms = pd.Series((ok["end"].to_numpy() - ok["start"].to_numpy()) * 1000.0)
    second = _seconds(ok["end"], t0)
    overall = _percentile_table(ms, [second]).reset_index(names="second")
    overall.insert(1, "server", ALL)
    per = _percentile_table(ms, [second, ok["server"].astype(str).to_numpy()])
    per = per.reset_index(names=["second", "server"])
    out = pd.concat([overall, per], ignore_index=True)
    out["count"] = out["count"].astype("int64")
    return out.sort_values(["second", "server"], kind="stable", ignore_index=True)[columns]


def lateness(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second of intended send time: lateness (start - intended, clipped at 0) of first
    attempts in ms. Columns: second, count, p50, p90, p95, p99, max."""
    columns = ["second", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    first = attempts[attempts["attempt"] == 1]
    if first.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    late = np.clip(first["start"].to_numpy() - first["intended"].to_numpy(), 0.0, None)
    table = _percentile_table(pd.Series(late * 1000.0), [_seconds(first["intended"], t0)])
    out = table.reset_index(names="second")
    out["count"] = out["count"].astype("int64")
    return out[columns]


def reply_key(code: object, enhanced: object, outcome: object, phase: object) -> str:
    """'<code> <enhanced>' for a reply; '<outcome> at <phase>' when no reply came."""
    if isinstance(code, int | float) and code == code and code:
        return f"{int(code)} {'' if enhanced != enhanced else enhanced or ''}".strip()
    return f"{outcome} at {'?' if phase != phase else phase}"


def reply_counts(attempts: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Attempts counted by reply key (and any `by` columns): columns *by, reply, count.

    Groups on the raw columns first and formats a key only per distinct combination, so
    a million attempts cost one groupby, not a million string formats.
    """
    by = by or []
    raw = ["code", "enhanced", "outcome", "phase"]
    frame = attempts.reindex(columns=[*by, *raw])
    frame["code"] = pd.to_numeric(frame["code"], errors="coerce").fillna(0)
    frame["enhanced"] = frame["enhanced"].fillna("").astype(str)
    frame["phase"] = frame["phase"].fillna("?").astype(str)
    counts = frame.groupby([*by, *raw], dropna=False).size().reset_index(name="count")
    counts["reply"] = [
        reply_key(c, e, o, p)
        for c, e, o, p in zip(
            counts["code"], counts["enhanced"], counts["outcome"], counts["phase"], strict=True
        )
    ]
    return counts.groupby([*by, "reply"], sort=True)["count"].sum().reset_index()


def replies(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time): attempts by reply, 2xx included.

    Columns: second, reply, class ('2xx', '4xx', '5xx' or 'none' when no reply came), count.
    """
    columns = ["second", "reply", "class", "count"]
    if attempts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = attempts.assign(second=_seconds(attempts["end"], t0))
    out = reply_counts(frame, ["second"])
    head = out["reply"].str[:1]
    out["class"] = np.where(head.str.isdigit(), head + "xx", "none")
    return out[columns]


def write_csvs(run_dir: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Each frame to `series/NAME.csv` in the run directory (apart from the journals)."""
    out_dir = run_dir / SERIES_DIR
    out_dir.mkdir(exist_ok=True)
    paths = {}
    for name, frame in frames.items():
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths[name] = path
    return paths
