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

from loadtest.analysis import metrics, msg_keys
from loadtest.outcomes import Outcome

ALL = "all"  # the `server` value of rows over every server
FAILED = tuple(o.value for o in Outcome if o is not Outcome.ACCEPTED)
PERCENTILES = (50, 90, 95, 99)
SERIES_DIR = "series"


def _seconds(times: pd.Series, t0: float) -> np.ndarray:
    # Journals keep microseconds: round first so a time equal to t0 never lands in -1.
    seconds: np.ndarray = np.floor(np.round(times.to_numpy(dtype="float64") - t0, 6))
    return seconds.astype("int64")


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
    # Integer codes and bincounts over a (second, server) grid: no string groupbys.
    second = _seconds(attempts["end"], t0)
    lo = int(second.min())
    n_seconds = int(second.max()) - lo + 1
    server, names = _codes(attempts["server"])
    cell = (second - lo) * len(names) + server  # the grid is second-major, server-minor
    size = len(names) * n_seconds
    outcome, outcomes = _codes(attempts["outcome"])
    kinds = [Outcome.ACCEPTED.value, *FAILED]
    per_outcome = np.bincount(cell * len(outcomes) + outcome, minlength=size * len(outcomes))
    per_outcome = per_outcome.reshape(size, len(outcomes))
    counts = {k: np.zeros(size, dtype="int64") for k in kinds}
    for i, name in enumerate(outcomes):
        if name in counts:
            counts[name] = per_outcome[:, i]
    accepted = outcome == (outcomes.index(Outcome.ACCEPTED.value) if "accepted" in outcomes else -1)
    weights = (
        np.nan_to_num(attempts["bytes"].to_numpy(dtype="float64"))
        if "bytes" in attempts
        else np.zeros(len(attempts))
    )
    accepted_bytes = np.bincount(cell[accepted], weights=weights[accepted], minlength=size)
    opened = (
        np.bincount(cell, weights=attempts["new_connection"].fillna(0).to_numpy(dtype="float64"),
                    minlength=size)
        if "new_connection" in attempts
        else np.zeros(size)
    )  # fmt: skip
    out = pd.DataFrame(
        {
            "second": np.repeat(np.arange(lo, lo + n_seconds), len(names)),
            "server": np.tile(np.array(names, dtype=object), n_seconds),
            "accepted": counts[Outcome.ACCEPTED.value],
            "accepted_mb": (accepted_bytes / 1e6).round(6),
            "attempts": per_outcome.sum(axis=1),
            **{k: counts[k] for k in FAILED},
            "connections_opened": opened.astype("int64"),
            "open_sessions": _open_sessions(receipts, t0, lo, n_seconds, names),
        }
    )
    out["server"] = out["server"].astype(attempts["server"].dtype)
    return out[columns]


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a column's values, numbered in sorted order of the values."""
    if isinstance(column.dtype, pd.CategoricalDtype) and not column.isna().any():
        column = column.cat.remove_unused_categories()
        codes, names = column.cat.codes.to_numpy(), [str(c) for c in column.cat.categories]
    else:
        codes, uniques = pd.factorize(column.astype(str))
        names = [str(u) for u in uniques]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype="int64")
    rank[order] = np.arange(len(names))
    return rank[codes], [names[i] for i in order]


def _open_sessions(
    receipts: pd.DataFrame, t0: float, lo: int, n_seconds: int, names: list[str]
) -> np.ndarray:
    """Sessions spanning each second, per sink, from their first and last receipts, on the
    (second, server) grid of `servers`."""
    size = n_seconds * len(names)
    if receipts.empty or "session" not in receipts:
        return np.zeros(size, dtype="int64")
    # Session ids name their sink (and worker): "primary.12", "primary.w1.3".
    session = receipts["session"]
    if isinstance(session.dtype, pd.CategoricalDtype) and not session.isna().any():
        key, sessions = msg_keys.factorize(session)  # by the codes: no text per row
    else:
        key, sessions = pd.factorize(session.astype(str))
    times = receipts["time"].to_numpy(dtype="float64")
    first = np.full(len(sessions), np.inf)
    last = np.full(len(sessions), -np.inf)
    np.minimum.at(first, key, times)
    np.maximum.at(last, key, times)
    first_row = np.full(len(sessions), len(key))
    np.minimum.at(first_row, key, np.arange(len(key)))
    sink_of = receipts["sink"].iloc[first_row].astype(str).to_numpy()  # one per session
    where = {name: i for i, name in enumerate(names)}
    column = np.array([where.get(s, -1) for s in sink_of], dtype="int64")
    known = column >= 0
    # +1 in the second a session starts, -1 in the second after its last message; a
    # running sum per server. Sessions outside the grid are clipped to its edges.
    start = np.clip(_seconds(pd.Series(first[known]), t0) - lo, 0, n_seconds)
    stop = np.clip(_seconds(pd.Series(last[known]), t0) - lo + 1, 0, n_seconds)
    width = (n_seconds + 1) * len(names)
    delta = np.bincount(start * len(names) + column[known], minlength=width) - np.bincount(
        stop * len(names) + column[known], minlength=width
    )
    running = delta.reshape(n_seconds + 1, len(names)).cumsum(axis=0)[:n_seconds]
    return running.ravel().astype("int64")


def _percentile_table(
    values_ms: np.ndarray, group: np.ndarray, by_value: np.ndarray | None = None
) -> pd.DataFrame:
    """count, p50..p99 (linear interpolation, as numpy and pandas) and max of the values
    of each group (integer codes): sorts, no per-group Python. `by_value`, the argsort of
    the values, may be shared by several groupings of the same values."""
    if by_value is None:
        by_value = np.argsort(values_ms)
    order = by_value[np.argsort(group[by_value], kind="stable")]  # by group, then value
    values, groups = values_ms[order], group[order]
    heads = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])  # callers pass values
    counts = np.diff(np.r_[heads, len(groups)])
    table = {"count": counts}
    for p in PERCENTILES:
        position = heads + (counts - 1) * (p / 100.0)
        below = np.floor(position).astype("int64")
        above = np.minimum(below + 1, heads + counts - 1)
        fraction = position - below
        table[f"p{p}"] = values[below] + (values[above] - values[below]) * fraction
    table["max"] = values[heads + counts - 1]
    out = pd.DataFrame(table, index=groups[heads])
    return out.round(3)


def latency(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time), overall (`server` = "all") and per server: latency of
    accepted attempts in ms. Columns: second, server, count, p50, p90, p95, p99, max."""
    columns = ["second", "server", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    ok = (attempts["outcome"] == Outcome.ACCEPTED.value).to_numpy()
    if not ok.any():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    end = attempts["end"].to_numpy(dtype="float64")[ok]  # columns, not the whole frame
    ms = (end - attempts["start"].to_numpy(dtype="float64")[ok]) * 1000.0
    second = _seconds(pd.Series(end), t0)
    by_value = np.argsort(ms)
    overall = _percentile_table(ms, second, by_value)
    overall.insert(0, "server", ALL)
    server, names = _codes(attempts["server"])
    per = _percentile_table(ms, second * len(names) + server[ok], by_value)
    per.insert(0, "server", np.array(names, dtype=object)[per.index.to_numpy() % len(names)])
    per.index = per.index // len(names)
    out = pd.concat([overall, per]).rename_axis("second").reset_index()
    out["count"] = out["count"].astype("int64")
    return out.sort_values(["second", "server"], kind="stable", ignore_index=True)[columns]


def lateness(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second of intended send time: lateness (start - intended, clipped at 0) of first
    attempts in ms. Columns: second, count, p50, p90, p95, p99, max."""
    columns = ["second", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    first = (attempts["attempt"] == 1).to_numpy()
    if not first.any():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    intended = attempts["intended"].to_numpy(dtype="float64")[first]
    late = np.clip(attempts["start"].to_numpy(dtype="float64")[first] - intended, 0.0, None)
    out = _percentile_table(late * 1000.0, _seconds(pd.Series(intended), t0))
    out = out.rename_axis("second").reset_index()
    out["count"] = out["count"].astype("int64")
    return out[columns]


def replies(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time): attempts by reply, 2xx included.

    Columns: second, reply, class ('2xx', '4xx', '5xx' or 'none' when no reply came), count.
    """
    columns = ["second", "reply", "class", "count"]
    if attempts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = attempts.assign(second=_seconds(attempts["end"], t0))
    out = metrics.reply_counts(frame, ["second"])
    head = out["reply"].str[:1]
    out["class"] = np.where(head.str.isdigit(), head + "xx", "none")
    return out[columns]


def received(frame: pd.DataFrame, servers: list[str], t0: float) -> pd.DataFrame:
    """Per second (from t0, or the first receipt when earlier) and server: receipts the
    sink acknowledged (`loadtest.analysis.received.deliveries`, dropped ones left out), for
    a run without the sender's journal. Columns: second, server, received; every second
    up to the last receipt present for every server, zeros included."""
    columns = ["second", "server", "received"]
    ok = frame[frame["outcome"] != "dropped"]
    if ok.empty or not servers:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    second = _seconds(ok["time"], t0)
    lo = min(0, int(second.min()))
    n_seconds = int(second.max()) - lo + 1
    where = {name: i for i, name in enumerate(servers)}
    column = ok["server"].astype(str).map(where)
    known = column.notna().to_numpy()
    cell = (second[known] - lo) * len(servers) + column[known].to_numpy(dtype="int64")
    return pd.DataFrame(
        {
            "second": np.repeat(np.arange(lo, lo + n_seconds), len(servers)),
            "server": np.tile(np.array(servers, dtype=object), n_seconds),
            "received": np.bincount(cell, minlength=n_seconds * len(servers)).astype("int64"),
        }
    )[columns]


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
