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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loadtest.analysis import metrics, msg_keys
from loadtest.analysis.attempt_figures import AttemptFigures
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.summary_model import (
    Failover,
    Latency,
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


@dataclass(frozen=True)
class Grouping:
    """Which stream each attempt and each message is in, as integer codes into `names`:
    the journal's stream column hashed once, the message ids once (against the
    per-message index), then every stream's rows are an integer comparison away."""

    names: list[str]
    of_attempt: np.ndarray  # per attempt row
    of_message: np.ndarray  # per row of reconcile.messages; -1: no attempt names it

    @classmethod
    def of(cls, attempts: pd.DataFrame, per: pd.DataFrame) -> Grouping:
        if attempts.empty or "stream" not in attempts:
            return cls([], np.zeros(len(attempts), dtype=np.int64), np.full(len(per), -1))
        stream = attempts["stream"]
        if isinstance(stream.dtype, pd.CategoricalDtype) and not stream.isna().any():
            codes, uniques = msg_keys.factorize(stream)  # by the codes: no text per row
        else:
            codes, uniques = pd.factorize(stream.astype(str))
        of_message = np.full(len(per), -1, dtype=np.int64)
        rows = msg_keys.positions(per.index, attempts["msg_id"])
        found = rows >= 0
        of_message[rows[found]] = codes[found]  # a message's attempts share its stream
        return cls([str(u) for u in uniques], codes, of_message)

    def code(self, name: str) -> int:
        return self.names.index(name) if name in self.names else -2  # -2: matches nothing


def summarise(
    attempts: pd.DataFrame,
    per: pd.DataFrame,
    not_sent: pd.DataFrame,
    plan: StreamPlan | None,
    total: int,
    run_id: str,
    count: Count,
    windows: Sequence[FaultWindow],
    analyse: Analyse,
    run_figures: AttemptFigures | None = None,
) -> dict[str, StreamResult]:
    """Each stream's part: the campaign's streams (`plan`) in its order, then any other a
    journal names. `attempts` and `not_sent` are this run's rows, `per` is
    reconcile.messages of the attempts, `total` the messages the schedule plans. A stream
    with every attempt and message (a one-stream campaign) is handed the frames
    themselves, not a copy of every column, and takes the run's latency figures from
    `run_figures` when given."""
    groups = Grouping.of(attempts, per)
    unsent_by = _unsent(not_sent)
    planned = planned_per_stream(plan, total, run_id, groups, per, unsent_by)
    out = {}
    for name in planned:
        code = groups.code(name)
        every = bool((groups.of_attempt == code).all())
        mine = attempts if every else attempts[groups.of_attempt == code]
        of_message = groups.of_message == code
        messages = per if of_message.all() else per[of_message]
        counted = count(messages, planned[name], unsent_by.get(name, frozenset()))
        times = run_figures if every else None
        measured = metrics.Times() if times else metrics.Times.of(mine)
        out[name] = StreamResult(
            **counted.model_dump(),
            latency_ms=_whole(times.latency if times else measured.latency_ms()),
            response_time_ms=times.response_time if times else measured.response_time_ms(),
            lateness_ms=times.lateness if times else measured.lateness_ms(),
            failovers=[analyse(w, mine, messages) for w in windows],
        )
    return out


def planned_per_stream(
    plan: StreamPlan | None,
    total: int,
    run_id: str,
    groups: Grouping,
    per: pd.DataFrame,
    unsent_by: dict[str, frozenset[str]],
) -> dict[str, int]:
    """How many of the schedule's `total` messages each stream has, in the campaign's
    order (then any other stream a journal names): by the journals for every message they
    name, by the plan for the rest (message k is `RUN_ID-k`). Without a plan (no
    scenario.yaml) or a run id, only what the journals name."""
    counts = dict.fromkeys(plan.names if plan is not None else (), 0)
    named = groups.of_message >= 0
    seen = np.bincount(groups.of_message[named], minlength=len(groups.names))
    for name, n in zip(groups.names, seen.tolist(), strict=True):
        counts[name] = counts.get(name, 0) + n
    attempted = set(per.index[named]) if unsent_by else set()
    extra = {name: len(ids - attempted) for name, ids in unsent_by.items()}
    for name, n in extra.items():
        counts[name] = counts.get(name, 0) + n
    if plan is None or not run_id or sum(counts.values()) >= total:
        return counts  # the journals name every planned message (a run that ran to its end)
    ids = pd.Series(per.index[named]).astype(str)
    ids = pd.concat([ids, pd.Series([i for s in unsent_by.values() for i in s], dtype=str)])
    unseen = np.ones(total, dtype=bool)
    unseen[_indices(ids, run_id, total)] = False
    for index in np.flatnonzero(unseen).tolist():
        counts[plan.stream(index)] += 1
    return counts


def _unsent(not_sent: pd.DataFrame) -> dict[str, frozenset[str]]:
    """The ids of messages not sent (every recipient suppressed), by the stream their
    journal row names."""
    if not_sent.empty or "stream" not in not_sent:
        return {}
    return {
        str(name): frozenset(frame["msg_id"].astype(str))
        for name, frame in not_sent.groupby(not_sent["stream"].astype(str))
    }


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


def _whole(latency: Latency) -> Percentiles:
    """The overall percentiles of a Latency, without its per-server ones."""
    return Percentiles(**{k: getattr(latency, k) for k in Percentiles.model_fields})
