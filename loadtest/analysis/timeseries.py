"""Tidy 1 s time series from the journals: pure functions, DataFrames in, DataFrames out.

Every series is binned on whole seconds from the run's t0 (`second` = floor(time - t0)):
completions by their end time, lateness by the message's intended time. The frames are
tidy (one row per second and server, or per second and reply) so they plot directly and
read back from `series/*.csv` in a run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    return servers_of([server_grid(attempts, t0)], [session_spans(receipts)], t0)


SERVER_COLUMNS = ["second", "server", "accepted", "accepted_mb", "attempts", *FAILED,
                  "connections_opened", "open_sessions"]  # fmt: skip
# The counts `server_grid` keeps per second and server, in this order.
GRID_COUNTS = (Outcome.ACCEPTED.value, *FAILED, "attempts", "accepted_bytes", "opened")


@dataclass
class Grid:
    """Counts per (second, server) of some attempts (`GRID_COUNTS`), on their own grid:
    the seconds from `lo` on, the servers `names` (sorted); `counts` is seconds x servers
    x counts. Grids of shares of a run are added onto the run's grid (`servers_of`)."""

    lo: int
    names: list[str]
    counts: np.ndarray


def server_grid(attempts: pd.DataFrame, t0: float) -> Grid | None:
    """The grid of these attempts (None: no attempt)."""
    if attempts.empty:
        return None
    # Integer codes and bincounts over a (second, server) grid: no string groupbys.
    second = _seconds(attempts["end"], t0)
    lo = int(second.min())
    n_seconds = int(second.max()) - lo + 1
    server, names = _codes(attempts["server"])
    cell = (second - lo) * len(names) + server  # the grid is second-major, server-minor
    size = len(names) * n_seconds
    outcome, outcomes = _codes(attempts["outcome"])
    per_outcome = np.bincount(cell * len(outcomes) + outcome, minlength=size * len(outcomes))
    per_outcome = per_outcome.reshape(size, len(outcomes))
    counts = np.zeros((size, len(GRID_COUNTS)), dtype="float64")
    for i, name in enumerate(outcomes):
        if name in GRID_COUNTS[: 1 + len(FAILED)]:
            counts[:, GRID_COUNTS.index(name)] = per_outcome[:, i]
    counts[:, GRID_COUNTS.index("attempts")] = per_outcome.sum(axis=1)
    accepted = outcome == (outcomes.index(Outcome.ACCEPTED.value) if "accepted" in outcomes else -1)
    weights = (
        np.nan_to_num(attempts["bytes"].to_numpy(dtype="float64"))
        if "bytes" in attempts
        else np.zeros(len(attempts))
    )
    counts[:, GRID_COUNTS.index("accepted_bytes")] = np.bincount(
        cell[accepted], weights=weights[accepted], minlength=size
    )
    if "new_connection" in attempts:
        counts[:, GRID_COUNTS.index("opened")] = np.bincount(
            cell, weights=attempts["new_connection"].fillna(0).to_numpy(dtype="float64"),
            minlength=size,
        )  # fmt: skip
    return Grid(lo, names, counts.reshape(n_seconds, len(names), len(GRID_COUNTS)))


def servers_of(grids: list[Grid | None], spans: list[pd.DataFrame], t0: float) -> pd.DataFrame:
    """`servers` of a run from its shares' grids and session spans (`session_spans`): the
    counts added onto the run's grid (every second from the first to the last, every
    server, sorted), the sessions of every share put together."""
    made = [g for g in grids if g is not None]
    if not made:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in SERVER_COLUMNS})
    lo = min(g.lo for g in made)
    n_seconds = max(g.lo + len(g.counts) for g in made) - lo
    names = sorted({n for g in made for n in g.names})
    if len(made) == 1 and made[0].names == names:
        counts = made[0].counts.reshape(-1, len(GRID_COUNTS))
    else:
        grid = np.zeros((n_seconds, len(names), len(GRID_COUNTS)))
        for g in made:
            at = [names.index(n) for n in g.names]
            grid[g.lo - lo : g.lo - lo + len(g.counts), at] += g.counts
        counts = grid.reshape(-1, len(GRID_COUNTS))

    def column(name: str) -> np.ndarray:
        return counts[:, GRID_COUNTS.index(name)]

    out = pd.DataFrame(
        {
            "second": np.repeat(np.arange(lo, lo + n_seconds), len(names)),
            "server": np.tile(np.array(names, dtype=object), n_seconds),
            "accepted": column(Outcome.ACCEPTED.value).astype("int64"),
            "accepted_mb": (column("accepted_bytes") / 1e6).round(6),
            "attempts": column("attempts").astype("int64"),
            **{k: column(k).astype("int64") for k in FAILED},
            "connections_opened": column("opened").astype("int64"),
            "open_sessions": _open_sessions(_spans_of(spans), t0, lo, n_seconds, names),
        }
    )
    out["server"] = out["server"].astype(pd.CategoricalDtype(names))
    return out[SERVER_COLUMNS]


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


def session_spans(receipts: pd.DataFrame) -> pd.DataFrame:
    """Per sink session in these receipts: its first and last receipt's time and its sink
    (of its first receipt). Columns session, first, last, sink."""
    columns = ["session", "first", "last", "sink"]
    if receipts.empty or "session" not in receipts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
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
    return pd.DataFrame(
        {"session": np.asarray(sessions, dtype=object), "first": first, "last": last,
         "sink": sink_of}
    )  # fmt: skip


def _spans_of(spans: list[pd.DataFrame]) -> pd.DataFrame:
    """The sessions of several shares of the messages as one: a session whose receipts
    are in several has its earliest first, latest last, and the sink of its earliest."""
    if len(spans) == 1:
        return spans[0]
    every = pd.concat(spans, ignore_index=True)
    every = every.sort_values("first", kind="stable")
    grouped = every.groupby("session", sort=False)
    return pd.DataFrame(
        {"first": grouped["first"].min(), "last": grouped["last"].max(),
         "sink": grouped["sink"].first()}
    ).reset_index()  # fmt: skip


def _open_sessions(
    spans: pd.DataFrame, t0: float, lo: int, n_seconds: int, names: list[str]
) -> np.ndarray:
    """Sessions spanning each second, per sink, from their first and last receipts, on the
    (second, server) grid of `servers`."""
    size = n_seconds * len(names)
    if spans.empty:
        return np.zeros(size, dtype="int64")
    where = {name: i for i, name in enumerate(names)}
    column = np.array([where.get(s, -1) for s in spans["sink"]], dtype="int64")
    known = column >= 0
    first = spans["first"].to_numpy(dtype="float64")
    last = spans["last"].to_numpy(dtype="float64")
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


@dataclass
class Values:
    """Values in ms of some attempts (a share of a run's), each with its second and (for
    latency) the server's name: what a per-second table of exact percentiles is made of,
    put together over shares (`tally.added`)."""

    ms: list[np.ndarray] = field(default_factory=list)
    second: list[np.ndarray] = field(default_factory=list)
    server: list[np.ndarray] = field(default_factory=list)  # codes into `names`
    names: list[list[str]] = field(default_factory=list)  # sorted

    def joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Every share's values, seconds and server codes into the servers of all (sorted)."""
        if len(self.ms) == 1:
            return self.ms[0], self.second[0], self.server[0], self.names[0]
        names = sorted({n for share in self.names for n in share})
        servers = [
            np.asarray([names.index(n) for n in share], dtype="int64")[codes]
            for codes, share in zip(self.server, self.names, strict=True)
        ]
        return (
            np.concatenate(self.ms),
            np.concatenate(self.second),
            np.concatenate(servers),
            names,
        )


def latency(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time), overall (`server` = "all") and per server: latency of
    accepted attempts in ms. Columns: second, server, count, p50, p90, p95, p99, max."""
    return latency_of(latency_values(attempts, t0))


def latency_values(attempts: pd.DataFrame, t0: float) -> Values:
    """The latency of these attempts' accepted ones, by second of their end."""
    ok = (attempts["outcome"] == Outcome.ACCEPTED.value).to_numpy()
    if not ok.any():
        return Values()
    end = attempts["end"].to_numpy(dtype="float64")[ok]  # columns, not the whole frame
    ms = (end - attempts["start"].to_numpy(dtype="float64")[ok]) * 1000.0
    server, names = _codes(attempts["server"])
    return Values([ms], [_seconds(pd.Series(end), t0)], [server[ok]], [names])


def latency_of(values: Values) -> pd.DataFrame:
    """`latency` of attempts whose `latency_values` these are (of every share)."""
    columns = ["second", "server", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    if not values.ms:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    ms, second, server, names = values.joined()
    by_value = np.argsort(ms)
    overall = _percentile_table(ms, second, by_value)
    overall.insert(0, "server", ALL)
    per = _percentile_table(ms, second * len(names) + server, by_value)
    per.insert(0, "server", np.array(names, dtype=object)[per.index.to_numpy() % len(names)])
    per.index = per.index // len(names)
    out = pd.concat([overall, per]).rename_axis("second").reset_index()
    out["count"] = out["count"].astype("int64")
    return out.sort_values(["second", "server"], kind="stable", ignore_index=True)[columns]


def lateness(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second of intended send time: lateness (start - intended, clipped at 0) of first
    attempts in ms. Columns: second, count, p50, p90, p95, p99, max."""
    return lateness_of(lateness_values(attempts, t0))


def lateness_values(attempts: pd.DataFrame, t0: float) -> Values:
    """The lateness of these attempts' first ones, by second of their intended time."""
    first = (attempts["attempt"] == 1).to_numpy()
    if not first.any():
        return Values()
    intended = attempts["intended"].to_numpy(dtype="float64")[first]
    late = np.clip(attempts["start"].to_numpy(dtype="float64")[first] - intended, 0.0, None)
    return Values([late * 1000.0], [_seconds(pd.Series(intended), t0)], [])


def lateness_of(values: Values) -> pd.DataFrame:
    """`lateness` of attempts whose `lateness_values` these are (of every share)."""
    columns = ["second", "count", *(f"p{p}" for p in PERCENTILES), "max"]
    if not values.ms:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    ms = values.ms[0] if len(values.ms) == 1 else np.concatenate(values.ms)
    second = values.second[0] if len(values.second) == 1 else np.concatenate(values.second)
    out = _percentile_table(ms, second)
    out = out.rename_axis("second").reset_index()
    out["count"] = out["count"].astype("int64")
    return out[columns]


def replies(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Per second (by end time): attempts by reply, 2xx included.

    Columns: second, reply, class ('2xx', '4xx', '5xx' or 'none' when no reply came), count.
    """
    return replies_of([reply_counts(attempts, t0)])


def reply_counts(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """These attempts by second (of their end) and reply: second, reply, count."""
    if attempts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ("second", "reply", "count")})
    frame = attempts.assign(second=_seconds(attempts["end"], t0))
    return metrics.reply_counts(frame, ["second"])


def replies_of(counts: list[pd.DataFrame]) -> pd.DataFrame:
    """`replies` from shares' `reply_counts`, added."""
    columns = ["second", "reply", "class", "count"]
    made = [c for c in counts if len(c)]
    if not made:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    out = made[0] if len(made) == 1 else (
        pd.concat(made, ignore_index=True)
        .groupby(["second", "reply"], sort=True)["count"].sum().reset_index()
    )  # fmt: skip
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
