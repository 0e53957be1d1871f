"""The parts of a summary made from the run's attempts alone: latency, response time and
lateness (HDR histograms, `metrics`), throughput with its lowest 5 s rate (`rolling`), the
sender's backlog (`backlog`).

They need neither the receipts nor the per-message table, so `report_child` makes them in
its child, beside the rest of the summary, and hands them back; `summary.summarise` makes
them itself otherwise (`of`), and of a run read a partition at a time, a share at a
time (`Part`, added as `tally` adds). A stream holding every attempt has the very same latency
figures (`streams.finish`). This run's rows (`run_attempts`, `not_sent`) and its
planned messages (`planned`) are read here, for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis import backlog, capacity, metrics, rolling
from loadtest.analysis.journals import Journals
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import (
    Backlog,
    Latency,
    Percentiles,
    ServerThroughput,
    Throughput,
)
from loadtest.analysis.tally import ADD, earliest, latest
from loadtest.schedule import Schedule


@dataclass(frozen=True)
class AttemptFigures:
    latency: Latency
    response_time: Percentiles
    lateness: Percentiles
    throughput: Throughput
    backlog: Backlog


def of(run: RunDir, attempts: pd.DataFrame) -> AttemptFigures:
    """The figures of `attempts`, this run's (`run_attempts(run.journals)`)."""
    part = Part()
    part.add(attempts)
    scenario = run.scenario
    schedule = scenario.campaign.build_schedule() if scenario else None
    return part.result(schedule, run.t0, run.partial)


@dataclass
class Part:
    """The figures of a run's attempts, added a share of the messages at a time (a
    partition of them, or all: `add`, or `tally.added`): what each figure needs is held
    in a form that adds up over any split. Percentiles: HDR counts by slot
    (`metrics.Times`). Throughput: the accepted count per server and the earliest start.
    The 1 s peak, the 5 s floor and the backlog need instants of the whole run: the
    accepted attempts' ends, and per message when it fell due and when it was first
    accepted (8 bytes each), put together at the end. The same figures the whole frame
    gives."""

    rows: int = 0
    times: metrics.Times = field(default_factory=metrics.Times)
    accepted_by_server: dict[str, int] = field(default_factory=dict)
    first_start: float | None = field(default=None, metadata={ADD: earliest})
    last_start: float | None = field(default=None, metadata={ADD: latest})
    ends: list[np.ndarray] = field(default_factory=list)  # accepted attempts' ends
    falls_due: list[np.ndarray] = field(default_factory=list)
    first_accepted: list[np.ndarray] = field(default_factory=list)

    def add(self, attempts: pd.DataFrame) -> None:
        """One share's attempts (every attempt of its messages)."""
        if attempts.empty:
            return
        self.rows += len(attempts)
        self.times.add(attempts)
        ok = attempts[["server", "end"]][attempts["outcome"] == "accepted"]
        for name, n in ok["server"].value_counts(sort=False).items():
            if n:
                key = str(name)
                self.accepted_by_server[key] = self.accepted_by_server.get(key, 0) + int(n)
        starts = attempts["start"]
        self.first_start = earliest(self.first_start, float(starts.min()))
        self.last_start = latest(self.last_start, float(starts.max()))
        self.ends.append(ok["end"].to_numpy(dtype="float64"))
        falls_due, first_accepted = backlog.due_and_accepted(attempts)
        self.falls_due.append(falls_due)
        self.first_accepted.append(first_accepted)

    def result(self, schedule: Schedule | None, t0: float, partial: bool) -> AttemptFigures:
        """The figures of every share added; `schedule` gives the constant-rate stages
        of the 5 s floor, cut where an interrupted (`partial`) run stopped sending."""
        ends = np.concatenate(self.ends) if self.ends else np.empty(0)
        throughput = self._throughput(ends)
        stages = capacity.constant_windows(schedule) if schedule is not None else []
        if partial and self.last_start is not None:
            # An interrupted run's stages end where its sending stopped: the windows after
            # that would read as 0 msgs/s, a stall that never was.
            stages = rolling.clip(stages, self.last_start - t0)
        low = rolling.lowest_window(ends, stages, t0) if self.rows else None
        throughput.min_rolling_msgs_per_s = low.msgs_per_s if low else None
        throughput.min_rolling_at_s = low.at_s if low else None
        return AttemptFigures(
            latency=self.times.latency_ms(),
            response_time=self.times.response_time_ms(),
            lateness=self.times.lateness_ms(),
            throughput=throughput,
            backlog=backlog.of_instants(
                np.sort(np.concatenate(self.falls_due)),
                np.sort(np.concatenate(self.first_accepted)),
                t0,
            )
            if self.rows
            else Backlog(),
        )

    def _throughput(self, ends: np.ndarray) -> Throughput:
        """The throughput part: accepted per second by end time, the mean over
        the active span (the first start to the last accepted end), the peak 1 s bin."""
        if not len(ends):
            return Throughput(mean_msgs_per_s=0.0, peak_msgs_per_s=0.0, per_server={})
        first = self.first_start if self.first_start is not None else math.nan
        span = max(1.0, float(ends.max()) - first)
        bins = np.floor(ends - first).astype(int)
        return Throughput(
            mean_msgs_per_s=round(len(ends) / span, 3),
            peak_msgs_per_s=float(np.unique(bins, return_counts=True)[1].max()),
            per_server={
                s: ServerThroughput(accepted=n, mean_msgs_per_s=round(n / span, 3))
                for s, n in sorted(self.accepted_by_server.items())
            },
        )


def run_attempts(journals: Journals) -> pd.DataFrame:
    """This run's attempts (a journal directory reused by another run keeps the other
    run's rows; they are left out)."""
    attempts = journals.attempts
    run_id = str(journals.run.get("run_id", ""))
    if run_id and len(attempts) and "run_id" in attempts:
        mine = attempts["run_id"] == run_id
        if not mine.all():  # a filter copies every column: only when rows go
            attempts = attempts[mine]
    return attempts


def not_sent(run: RunDir) -> pd.DataFrame:
    """This run's rows of messages not sent: every recipient suppressed."""
    return not_sent_rows(run.journals, run.run.run_id)


def not_sent_rows(journals: Journals, run_id: str) -> pd.DataFrame:
    """Run `run_id`'s rows of messages not sent in these journals."""
    rows = journals.suppressed
    if run_id and len(rows) and "run_id" in rows:
        rows = rows[rows["run_id"] == run_id]
    return rows


def planned(run: RunDir) -> int:
    """The messages the run planned: run.json's, or the scenario's schedule's."""
    if not run.run.planned and run.scenario is not None:
        return run.scenario.campaign.build_schedule().total
    return run.run.planned
