"""The sender's backlog: how many messages were due and not yet accepted, over the run.

A message joins the backlog when it is due (its `intended` time: the schedule's, the open
model's) and leaves it when a server accepts it (the `end` of its first accepted attempt).
Counted exactly from those two instants per message, so the backlog is a step function
that rises only when a message falls due: its peak is reached at one of those instants, and
is found there (no sampling). The series samples the same function every `step_s` for the
report and for comparison with a plan (`maildrill plan`'s `plan-series.csv`), with at most
`MAX_POINTS` points whatever the run's length.

This is the measured counterpart of the fluid queue `maildrill plan` computes
(loadtest/plan/fluid.py): `peak` and `completion_s` answer its `peak_backlog` and
`completion_s`. A message a server is still working on counts here (it is not accepted
yet), where the plan's model has no service time: the drill's backlog is higher by about
the messages in flight (at most the connections). docs/metrics.md, "Backlog".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from loadtest.analysis import msg_keys
from loadtest.analysis.summary_model import Backlog
from loadtest.outcomes import Outcome

MAX_POINTS = 1000  # the series' length at most: 1 s steps up to about 16 minutes


def due_and_accepted(attempts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per message: when it fell due (its `intended`), and when it was first accepted (the
    `end` of its first accepted attempt; messages never accepted have none); unsorted."""
    key = msg_keys.factorize(attempts["msg_id"])[0]  # integer keys: no text hashed here
    named = key >= 0
    taken = named & (attempts["outcome"] == Outcome.ACCEPTED.value).to_numpy(dtype=bool)
    due = _first(attempts["intended"], key, named)
    accepted = _first(attempts["end"], key, taken)
    return due, accepted


def _first(values: pd.Series, key: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The smallest of `values` per key, over `rows` (a message without one: NaN)."""
    column = pd.Series(values.to_numpy(dtype="float64")[rows])
    return np.asarray(column.groupby(key[rows], sort=False).min().to_numpy(dtype="float64"))


def at(times: np.ndarray, due: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """The backlog at each of `times` (epoch seconds): due by then, not accepted by then."""
    waiting = np.searchsorted(due, times, side="right") - np.searchsorted(
        accepted, times, side="right"
    )
    return waiting.astype("int64")


def summarise(attempts: pd.DataFrame, t0: float) -> Backlog:
    """The Backlog part of a run's attempts (this run's messages only, suppressed rows out)."""
    if attempts.empty:
        return Backlog()
    due, accepted = due_and_accepted(attempts)
    return of_instants(np.sort(due), np.sort(accepted), t0)


def of_instants(due: np.ndarray, accepted: np.ndarray, t0: float) -> Backlog:
    """The Backlog part from every message's due instant and every accepted message's
    first acceptance, each sorted (a run's messages, in any number of shares)."""
    backlog_at_due = at(due, due, accepted)
    top = int(np.argmax(backlog_at_due))  # the first instant of the highest value
    last = float(max(due[-1], accepted[-1] if len(accepted) else due[-1]))
    span = max(0.0, last - t0)
    step = max(1.0, float(math.ceil(span / (MAX_POINTS - 1))))
    offsets = np.arange(0.0, span + step, step)  # past the last event: the series settles
    values = at(t0 + offsets, due, accepted)
    return Backlog(
        peak=int(backlog_at_due[top]),
        peak_at_s=round(float(due[top]) - t0, 3),
        completion_s=round(float(accepted[-1]) - t0, 3) if len(accepted) else None,
        left_at_end=int(len(due) - len(accepted)),
        step_s=step,
        series=[(round(float(s), 3), int(v)) for s, v in zip(offsets, values, strict=True)],
    )
