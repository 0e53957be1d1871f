"""One step's figures from its run directory's attempts (pure: a DataFrame in, figures out).

The step is a flat schedule: `rate` msgs/s for `duration_s` seconds from t0, so its window
is [0, duration_s) in seconds from t0. Every figure is counted from attempts.csv:

- offered: first attempts intended in the window, per second;
- accepted: messages offered in the window whose first acceptance came within `on_time_s`
  of their intended time (the same budget as summary.json's capacity steps), per second;
- delivered: accepted attempts ended in the steady part of the window (its last three
  quarters), per second. The first quarter is left out because nothing ends before the
  first messages have had their latency (a 200 ms server in a 2 s step would otherwise
  lose 10 % of its rate to the edge) and connections open there;
- backlog growth: the least-squares slope, over the steady part, of the backlog (messages
  offered so far in the window and not yet accepted), sampled at BACKLOG_SAMPLES instants;
- p95 latency (end - start) of the accepted attempts ended in the window, p95 response
  time (accepted - intended) of the messages offered in it;
- the shares of the attempts ended in the window that were refused, timed out, 4xx
  (throttled), 5xx (rejected) or dropped;
- busy connections: the time the attempts ended in the steady part took, summed, over its
  length (Little's law: the mean number of SMTP transactions in progress).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis import histograms
from loadtest.capacity.stability import StepFigures
from loadtest.outcomes import Outcome

BACKLOG_SAMPLES = 24
STEADY_FROM = 0.25  # of the window: where its steady part starts


def _p95_ms(seconds: np.ndarray) -> float | None:
    return histograms.percentiles_ms(seconds)["p95"] if len(seconds) else None


def step_figures(
    attempts: pd.DataFrame,
    t0: float,
    rate: float,
    duration_s: float,
    on_time_s: float,
    connections: int | None = None,
) -> StepFigures:
    if attempts.empty:
        return StepFigures(rate, 0.0, 0.0, 0.0, rate, None, None, connections=connections)
    outcome = attempts["outcome"].astype(str).to_numpy()
    start = attempts["start"].to_numpy(dtype="float64") - t0
    end = attempts["end"].to_numpy(dtype="float64") - t0
    intended = attempts["intended"].to_numpy(dtype="float64") - t0
    first = (attempts["attempt"] == 1).to_numpy()
    accepted = outcome == Outcome.ACCEPTED.value
    in_window = (intended >= 0) & (intended < duration_s)
    offered_at = np.sort(intended[first & in_window])
    # Each message's first acceptance (a retried drop can be accepted twice).
    taken = attempts.loc[accepted & in_window, ["msg_id", "intended", "end"]]
    taken = taken.sort_values("end").drop_duplicates("msg_id")
    taken_end = taken["end"].to_numpy(dtype="float64") - t0
    taken_intended = taken["intended"].to_numpy(dtype="float64") - t0
    response = taken_end - taken_intended
    on_time = int((response <= on_time_s).sum())

    ended = (end >= 0) & (end < duration_s)
    latency_s = end[ended & accepted] - start[ended & accepted]
    counted = ended & (outcome != Outcome.INTERRUPTED.value)
    n_ended = int(counted.sum())
    steady_from = STEADY_FROM * duration_s
    steady_s = duration_s - steady_from
    steady = counted & (end >= steady_from)

    def share(kind: Outcome) -> float:
        hits = int((counted & (outcome == kind.value)).sum())
        return round(hits / n_ended, 4) if n_ended else 0.0

    return StepFigures(
        rate=rate,
        offered_msgs_per_s=round(len(offered_at) / duration_s, 3),
        accepted_msgs_per_s=round(on_time / duration_s, 3),
        delivered_msgs_per_s=round(int((steady & accepted).sum()) / steady_s, 3),
        backlog_growth_msgs_per_s=round(
            backlog_growth(offered_at, np.sort(taken_end), duration_s), 3
        ),
        p95_latency_ms=_p95_ms(latency_s),
        p95_response_ms=_p95_ms(response),
        attempts=n_ended,
        refused_share=share(Outcome.REFUSED),
        timeout_share=share(Outcome.TIMEOUT),
        throttled_share=share(Outcome.DEFERRED),
        rejected_share=share(Outcome.REJECTED),
        dropped_share=share(Outcome.DROPPED),
        busy_connections=round(float((end - start)[steady].sum()) / steady_s, 3),
        connections=connections,
    )


def backlog_growth(offered_at: np.ndarray, accepted_at: np.ndarray, duration_s: float) -> float:
    """msgs/s by which the backlog grew over the steady part of the window.

    Both arguments are sorted times from t0: when each message of the step was offered
    and when each was first accepted.
    """
    times = np.linspace(STEADY_FROM * duration_s, duration_s, BACKLOG_SAMPLES)
    backlog = np.searchsorted(offered_at, times) - np.searchsorted(accepted_at, times)
    slope = np.polyfit(times, backlog.astype("float64"), 1)[0]
    return float(slope)
