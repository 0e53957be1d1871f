"""Per stream (transactional, promotional, ...): the whole run's figures, one stream at a time.

Nothing here measures anything itself. Each stream's part (`summary_model.StreamResult`)
is made by the functions that make the whole run's: the message counts by
`reconcile.count`, latency, response time and lateness by `metrics`, each fault by
`failover.tally`, handed this stream's attempts and per-message rows instead of all of
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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis import failover, metrics, msg_keys, reconcile
from loadtest.analysis.attempt_figures import AttemptFigures
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.summary_model import (
    Failover,
    Latency,
    Messages,
    Percentiles,
    StreamResult,
)
from loadtest.analysis.tally import ADD
from loadtest.campaign import StreamPlan

# reconcile.count with the run's arguments: (this stream's messages, its planned count, the
# ids of its messages not sent: every recipient suppressed) -> Messages.
Count = Callable[[pd.DataFrame, int, frozenset[str]], Messages]
# failover.tally with the run's end: (window, attempts, messages) -> failover.Tally.
TallyFault = Callable[[FaultWindow, pd.DataFrame, pd.DataFrame], failover.Tally]


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


def _both(a: bool, b: bool) -> bool:
    return a and b


@dataclass
class Stream:
    """One stream's figures over a share of the messages (added over shares). `every`:
    it held every attempt and message of every share, so its latency figures and faults
    are the run's own (`times` and `faults` then stay empty where the run's were made
    elsewhere); `seen`: its messages the journals name; `extra`: its messages not sent
    and never attempted."""

    counts: dict[str, int]
    times: metrics.Times = field(default_factory=metrics.Times)
    faults: tuple[failover.Tally, ...] = ()
    every: bool = field(default=False, metadata={ADD: _both})
    seen: int = 0
    extra: int = 0


@dataclass
class Tally:
    """Every stream's figures over a share; `indices`: the schedule indices of the
    messages the journals name (for the plan to fill in the rest); `order`: the streams
    in order of first use in the share's attempts."""

    streams: dict[str, Stream] = field(default_factory=dict)
    indices: list[np.ndarray] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


def tally(
    attempts: pd.DataFrame,
    per: pd.DataFrame,
    not_sent: pd.DataFrame,
    plan: StreamPlan | None,
    total: int,
    run_id: str,
    count: Count,
    windows: Sequence[FaultWindow],
    tally_fault: TallyFault,
    run_times: metrics.Times | None = None,
    run_faults: tuple[failover.Tally, ...] | None = None,
    whole_run: bool = True,
) -> Tally:
    """Each stream's figures over a share of the messages (`attempts`, `per` and
    `not_sent` are this run's rows of them). A stream with every attempt and message of
    the share is handed the frames themselves, not a copy of every column, and takes the
    share's own latency counts (`run_times`; none: the run's figures, made elsewhere, are
    its) and fault tallies (`run_faults`: the run's, when they were made of the same
    attempts) when given. `whole_run`: the share is the whole run."""
    groups = Grouping.of(attempts, per)
    unsent_by = _unsent(not_sent)
    named = groups.of_message >= 0
    seen = np.bincount(groups.of_message[named], minlength=len(groups.names))
    attempted = set(per.index[named].astype(str)) if unsent_by else set()
    out = Tally(order=list(groups.names))
    names = list(dict.fromkeys([*groups.names, *unsent_by]))
    for name in names:
        code = groups.code(name)
        mask = groups.of_attempt == code
        every = bool(mask.all())
        mine = attempts if every else attempts[mask]
        of_message = groups.of_message == code
        messages = per if of_message.all() else per[of_message]
        unsent = unsent_by.get(name, frozenset())
        counted = count(messages, 0, unsent).model_dump()
        whole = every and len(attempts) > 0
        if whole:
            times = run_times if run_times is not None else metrics.Times()
        else:
            times = metrics.Times.of(mine)
        if whole and run_faults is not None:
            faults = run_faults
        else:
            faults = tuple(tally_fault(w, mine, messages) for w in windows)
        out.streams[name] = Stream(
            counts=counted,
            times=times,
            faults=faults,
            every=every and len(attempts) > 0,
            seen=int(seen[code]) if code >= 0 else 0,
            extra=len(unsent - attempted),
        )
    named_all = sum(st.seen + st.extra for st in out.streams.values()) >= total
    if plan is not None and run_id and not (whole_run and named_all):
        # Which planned messages the journals name, for the plan to fill in the others
        # (`_planned`): of a run held whole, only when some are not named.
        ids = pd.Series(per.index[named]).astype(str)
        ids = pd.concat([ids, pd.Series([i for s in unsent_by.values() for i in s], dtype=str)])
        out.indices.append(_indices(ids, run_id, total))
    return out


def finish(
    counted: Tally,
    order: Sequence[str],
    plan: StreamPlan | None,
    total: int,
    windows: Sequence[FaultWindow],
    finish_fault: Callable[[FaultWindow, failover.Tally], Failover],
    run_figures: AttemptFigures | None = None,
    run_faults: tuple[tuple[failover.Tally, ...], list[Failover]] | None = None,
) -> dict[str, StreamResult]:
    """Each stream's part, from every share's `tally` added: the campaign's streams
    (`plan`) in its order, then the others the attempts name in `order` (of first use in
    the run's attempts journal), then those only messages not sent name (by name). A
    stream that held every attempt takes the run's latency figures; one whose fault
    tallies are the run's very ones (`run_faults`: those tallies and their failovers,
    finished as `finish_fault` does) takes the run's failovers."""
    journal = [n for n in order if n in counted.streams]
    others = sorted(n for n in counted.streams if n not in journal)
    names = list(dict.fromkeys([*(plan.names if plan is not None else ()), *journal, *others]))
    planned = _planned(counted, names, plan, total)
    out = {}
    for name in names:
        stream = counted.streams.get(name)
        if stream is None:  # a planned stream the journals never name
            stream = Stream(counts=Messages(**_NONE).model_dump())
        counts = reconcile.total([Messages(**stream.counts)], planned[name])
        # Every attempt of each share that held any of its attempts: the run's own figures
        # only if no other stream has an attempt (a share holding only this stream's
        # attempts says so too, where another share holds another stream's).
        if stream.every and run_figures is not None and journal == [name]:
            latency = _whole(run_figures.latency)
            response, lateness = run_figures.response_time, run_figures.lateness
        else:
            latency = _whole(stream.times.latency_ms())
            response, lateness = stream.times.response_time_ms(), stream.times.lateness_ms()
        if run_faults is not None and stream.faults is run_faults[0]:
            faults = list(run_faults[1])
        elif stream.faults:
            faults = [finish_fault(w, t) for w, t in zip(windows, stream.faults, strict=True)]
        else:
            faults = [finish_fault(w, failover.Tally()) for w in windows]
        out[name] = StreamResult(
            **counts.model_dump(),
            latency_ms=latency,
            response_time_ms=response,
            lateness_ms=lateness,
            failovers=faults,
        )
    return out


_NONE = dict.fromkeys(Messages.model_fields, 0)


def _planned(
    counted: Tally, names: list[str], plan: StreamPlan | None, total: int
) -> dict[str, int]:
    """How many of the schedule's `total` messages each stream has: by the journals for
    every message they name, by the plan for the rest (message k is `RUN_ID-k`)."""
    counts = {n: 0 for n in names}
    for name, stream in counted.streams.items():
        counts[name] += stream.seen + stream.extra
    if plan is None or not counted.indices or sum(counts.values()) >= total:
        return counts  # the journals name every planned message (a run that ran to its end)
    unseen = np.ones(total, dtype=bool)
    unseen[np.concatenate(counted.indices)] = False
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
