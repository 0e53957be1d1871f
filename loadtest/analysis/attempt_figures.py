"""The parts of a summary made from the run's attempts alone: latency, response time and
lateness (HDR histograms, `metrics`) and the sender's backlog (`backlog`).

They need neither the receipts nor the per-message table, so `report_child` makes them in
its child, beside the rest of the summary, and hands them back; `summary.summarise` makes
them itself otherwise (`of`). A stream holding every attempt has the very same ones
(`streams.summarise`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from loadtest.analysis import backlog, metrics
from loadtest.analysis.summary_model import Backlog, Latency, Percentiles


@dataclass(frozen=True)
class AttemptFigures:
    latency: Latency
    response_time: Percentiles
    lateness: Percentiles
    backlog: Backlog


def of(attempts: pd.DataFrame, t0: float) -> AttemptFigures:
    """The figures of this run's attempts (`report.run_attempts`), t0 the run's."""
    return AttemptFigures(
        latency=metrics.latency(attempts),
        response_time=metrics.response_time(attempts),
        lateness=metrics.lateness(attempts),
        backlog=backlog.summarise(attempts, t0),
    )
