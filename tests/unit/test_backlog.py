"""The sender's backlog (summary.json's `backlog`) on a hand-built run whose answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.analysis import backlog
from tests import runs
from tests.runs import T0, RunBuilder

SCENARIO = """\
name: hand-backlog
description: ten messages, a stall from 3 s to 7 s
servers:
  - {name: primary, priority: 10, local: true, host: 127.0.0.1, port: 2525}
  - {name: secondary, priority: 20, local: true, host: 127.0.0.1, port: 2526}
routing: {policy: failover}
campaign:
  seed: 1
  streams: [{name: promotional, size_median: 10000, size_sigma: 0.1}]
  schedule: [{duration_s: 10, rate: 1}]
users: 1
"""


def stalled_run(run_dir: Path) -> Path:
    """Ten messages due at 0, 1, ..., 9 s, each accepted 0.1 s after it is due, except:

    - 3, 5 and 6 wait out a stall: accepted at 7.0, 7.2 and 7.3 s;
    - 4 is refused by the primary at 4.01 s and accepted on the secondary at 7.1 s;
    - 9 is rejected for good: never accepted.

    So the backlog is 1 from 0 s, 2 at 4 s, 3 at 5 s, 4 at 6 s (the peak, first reached
    then) and down to 1 at 7.3 s; the last acceptance is message 8's, at 8.1 s; one
    message (9) is never accepted.
    """
    b = RunBuilder("hand-backlog")
    late = {3: 7.0, 5: 7.2, 6: 7.3}
    for k in range(10):
        t = float(k)
        if k == 4:
            b.attempt(k, "primary", t, t, t + 0.01, outcome="refused", code=None, enhanced="",
                      phase="connect", final=False)  # fmt: skip
            b.attempt(k, "secondary", t, 7.05, 7.1, attempt=2)
        elif k == 9:
            b.attempt(k, "primary", t, t, t + 0.05, outcome="rejected", code=550,
                      enhanced="5.7.1", phase="dot")  # fmt: skip
        else:
            b.attempt(k, "primary", t, late.get(k, t + 0.1) - 0.05, late.get(k, t + 0.1))
    return b.write(run_dir, SCENARIO, planned=10)


def test_peak_completion_and_series_of_a_stall(tmp_path: Path) -> None:
    result = runs.summarised(stalled_run(tmp_path / "run")).backlog
    assert result.peak == 4
    assert result.peak_at_s == 6.0
    assert result.completion_s == pytest.approx(8.1)
    assert result.left_at_end == 1
    assert result.step_s == 1.0
    # Sampled at whole seconds (a value at t counts what fell due and was accepted by t):
    # at 7 s message 3 is accepted (7.0) but 4, 5 and 6 are not; at 8 s only 9 waits.
    assert result.series == [(0.0, 1), (1.0, 1), (2.0, 1), (3.0, 1), (4.0, 2), (5.0, 3),
                             (6.0, 4), (7.0, 4), (8.0, 1), (9.0, 1)]  # fmt: skip


def test_a_run_without_attempts_has_no_backlog(tmp_path: Path) -> None:
    run_dir = RunBuilder("empty").write(tmp_path / "run", SCENARIO, planned=10)
    result = runs.summarised(run_dir).backlog
    assert result.peak is None
    assert result.completion_s is None
    assert result.series == []


def test_the_series_never_has_more_than_max_points() -> None:
    import pandas as pd

    n = 5000  # one message every second for 5000 s, each accepted 0.5 s later
    frame = pd.DataFrame({
        "msg_id": [f"m{k}" for k in range(n)],
        "intended": [T0 + k for k in range(n)],
        "end": [T0 + k + 0.5 for k in range(n)],
        "outcome": ["accepted"] * n,
    })  # fmt: skip
    result = backlog.summarise(frame, T0)
    assert len(result.series) <= backlog.MAX_POINTS
    assert result.step_s == 6.0  # ceil(4999.5 / 999)
    assert result.peak == 1
    assert result.completion_s == pytest.approx(n - 0.5)
    assert all(value in (0, 1) for _, value in result.series)
