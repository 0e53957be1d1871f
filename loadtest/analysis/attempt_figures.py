"""The parts of a summary made from the run's attempts alone: latency, response time and
lateness (HDR histograms, `metrics`), throughput with its lowest 5 s rate (`rolling`), the
sender's backlog (`backlog`).

They need neither the receipts nor the per-message table, so `report_child` makes them in
its child, beside the rest of the summary, and hands them back; `summary.summarise` makes
them itself otherwise (`of`). A stream holding every attempt has the very same latency
figures (`streams.summarise`). This run's rows (`run_attempts`, `not_sent`) and its
planned messages (`planned`) are read here, for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from loadtest.analysis import backlog, capacity, metrics, rolling
from loadtest.analysis.journals import Journals
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Backlog, Latency, Percentiles, Throughput
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
    scenario, t0 = run.scenario, run.t0
    schedule = scenario.campaign.build_schedule() if scenario else None
    return AttemptFigures(
        latency=metrics.latency(attempts),
        response_time=metrics.response_time(attempts),
        lateness=metrics.lateness(attempts),
        throughput=_with_floor(
            metrics.throughput(attempts), attempts, schedule, t0, partial=run.partial
        ),
        backlog=backlog.summarise(attempts, t0),
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
    rows, run_id = run.journals.suppressed, run.run.run_id
    if run_id and len(rows) and "run_id" in rows:
        rows = rows[rows["run_id"] == run_id]
    return rows


def planned(run: RunDir) -> int:
    """The messages the run planned: run.json's, or the scenario's schedule's."""
    if not run.run.planned and run.scenario is not None:
        return run.scenario.campaign.build_schedule().total
    return run.run.planned


def _with_floor(
    throughput: Throughput,
    attempts: pd.DataFrame,
    schedule: Schedule | None,
    t0: float,
    partial: bool = False,
) -> Throughput:
    """The throughput part with its lowest 5 s rate inside constant-rate stages (rolling.py;
    null without a schedule or such a stage). An interrupted run's stages end where its
    sending stopped: the windows after that would read as 0 msgs/s, a stall that never was."""
    stages = capacity.constant_windows(schedule) if schedule is not None else []
    if partial and len(attempts):
        stages = rolling.clip(stages, float(attempts["start"].max()) - t0)
    low = rolling.floor(attempts, stages, t0)
    throughput.min_rolling_msgs_per_s = low.msgs_per_s if low else None
    throughput.min_rolling_at_s = low.at_s if low else None
    return throughput
