"""Per stream (transactional, promotional, ...): the whole run's figures, one stream at a time.

Nothing here measures anything itself. Each stream's part (`summary_model.StreamResult`)
is made by the functions that make the whole run's: the message counts by
`reconcile.count`, latency, response time and lateness by `metrics`, each fault by
`failover.analyse`, handed this stream's attempts and per-message rows instead of all of
them. So a stream's figures mean what the whole run's mean (docs/metrics.md), and the
counts of the streams add up to the whole run's (a message received but never attempted
in this run is in no stream).

A message's stream is the one its attempts name (`attempts.csv`'s `stream`, the
`X-Maildrill-Stream` the sender put in it), or its journal row when it was not sent (every
recipient suppressed). A planned message the journals never name (the run ended before
it) is in the stream the campaign's plan gives it (`loadtest.campaign.StreamPlan`, the
same draw the sender makes), so `planned` and `not_sent` are per stream too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from loadtest.analysis import metrics
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.summary_model import (
    Failover,
    Messages,
    Percentiles,
    StreamResult,
)
from loadtest.campaign import StreamPlan

# reconcile.count with the run's arguments: (this stream's messages, its planned count, the
# ids of its messages not sent: every recipient suppressed) -> Messages.
Count = Callable[[pd.DataFrame, int, frozenset[str]], Messages]
# failover.analyse with the run's probes and times: (window, attempts, messages) -> Failover.
Analyse = Callable[[FaultWindow, pd.DataFrame, pd.DataFrame], Failover]


def summarise(
    attempts: pd.DataFrame,
    per: pd.DataFrame,
    not_sent: pd.DataFrame,
    planned: dict[str, int],
    count: Count,
    windows: Sequence[FaultWindow],
    analyse: Analyse,
) -> dict[str, StreamResult]:
    """Each stream's part: the streams of `planned` in its order (the campaign's), then
    any other a journal names. `attempts` and `not_sent` are this run's rows; `per` is
    reconcile.messages of the attempts."""
    names = list(planned)
    names += sorted(set(_named(attempts)) | set(_named(not_sent)) - set(names))
    codes, labels = _codes(attempts)
    out = {}
    for name in names:
        mine = attempts[codes == labels.get(name, -1)]
        ids = mine["msg_id"].unique() if len(mine) else np.array([], dtype=object)
        messages = per[per.index.isin(ids)]  # hashes the stream's ids, not the index
        unsent = (
            frozenset(not_sent.loc[not_sent["stream"] == name, "msg_id"])
            if len(not_sent) and "stream" in not_sent
            else frozenset()
        )
        counted = count(messages, planned.get(name, len(ids) + len(unsent - set(ids))), unsent)
        out[name] = StreamResult(
            **counted.model_dump(),
            latency_ms=_whole(metrics.latency(mine)),
            response_time_ms=metrics.response_time(mine),
            lateness_ms=metrics.lateness(mine),
            failovers=[analyse(w, mine, messages) for w in windows],
        )
    return out


def planned_per_stream(
    plan: StreamPlan | None,
    total: int,
    run_id: str,
    attempts: pd.DataFrame,
    not_sent: pd.DataFrame,
) -> dict[str, int]:
    """How many of the schedule's `total` messages each stream has, in the campaign's
    order: by the journals for every message they name (`RUN_ID-INDEX`), by the plan for
    the rest. Without a plan (no scenario.yaml) or a run id to read indices from, only
    what the journals name."""
    rows = pd.concat(
        [f[["msg_id", "stream"]] for f in (attempts, not_sent) if len(f) and "stream" in f],
        ignore_index=True,
    ) if len(attempts) or len(not_sent) else pd.DataFrame(columns=["msg_id", "stream"])  # fmt: skip
    rows = rows.drop_duplicates("msg_id")
    counts = dict.fromkeys(plan.names if plan is not None else (), 0)
    for name, n in rows["stream"].astype(str).value_counts(sort=False).items():
        counts[str(name)] = counts.get(str(name), 0) + int(n)
    if plan is None or not run_id:
        return counts
    known = _indices(rows["msg_id"], run_id, total)
    unseen = np.ones(total, dtype=bool)
    unseen[known] = False
    for index in np.flatnonzero(unseen).tolist():
        name = plan.stream(index)
        counts[name] += 1
    return counts


def _indices(ids: pd.Series, run_id: str, total: int) -> np.ndarray:
    """The schedule indices of this run's message ids (`RUN_ID-INDEX`), within `total`."""
    if ids.empty:
        return np.array([], dtype=np.int64)
    prefix = f"{run_id}-"
    ids = ids.astype(str)
    ours = ids[ids.str.startswith(prefix)].str.slice(len(prefix))
    numbers = pd.to_numeric(ours, errors="coerce").dropna().to_numpy()
    numbers = numbers[(numbers >= 0) & (numbers < total) & (numbers == np.floor(numbers))]
    indices: np.ndarray = numbers.astype(np.int64)
    return indices


def _named(frame: pd.DataFrame) -> Iterable[str]:
    """The streams a journal's rows name."""
    if frame.empty or "stream" not in frame:
        return []
    return [str(s) for s in frame["stream"].dropna().unique()]


def _codes(attempts: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Each attempt's stream as an integer code, and the code of each stream: one hashing
    of the column, then a comparison of integers per stream."""
    if attempts.empty or "stream" not in attempts:
        return np.zeros(len(attempts), dtype=np.int64), {}
    codes, uniques = pd.factorize(attempts["stream"].astype(str))
    return codes, {str(name): i for i, name in enumerate(uniques)}


def _whole(latency: Percentiles) -> Percentiles:
    """The overall percentiles of a Latency, without its per-server ones."""
    return Percentiles(**{k: getattr(latency, k) for k in Percentiles.model_fields})
