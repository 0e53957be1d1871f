"""Step-load capacity on hand-built journals whose knee is known (tests/runs.py: steps)."""

from __future__ import annotations

import json

import pytest

from loadtest.analysis import capacity
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.schedule import Schedule, Stage
from tests import runs


@pytest.fixture
def step_run(tmp_path):
    return runs.steps(tmp_path / "steps")


def test_knee_and_max_stable_throughput(step_run):
    cap = runs.summarised(step_run).capacity
    assert cap.knee_msgs_per_s == 30.0
    assert cap.max_stable_msgs_per_s == 36.0
    assert cap.p95_limit_ms == 250.0
    steps = cap.steps
    assert [s.offered_msgs_per_s for s in steps] == [10, 20, 30, 40, 50]  # not the ramp
    assert [s.stage for s in steps] == [1, 2, 3, 4, 5]
    assert [s.stable for s in steps] == [True, True, True, False, False]
    forty, fifty = steps[3], steps[4]
    assert forty.accepted_ratio == pytest.approx(0.9)
    assert forty.delivered_msgs_per_s == pytest.approx(36.0)
    assert forty.failed_attempts == 20
    assert forty.within_slo
    assert fifty.accepted_ratio == pytest.approx(1.0)
    assert fifty.p95_latency_ms == pytest.approx(300.0, abs=0.5)
    assert not fifty.within_slo
    assert fifty.delivered_msgs_per_s == pytest.approx(47.0)


def test_without_a_latency_slo_the_knee_is_the_highest_rate_kept_up_with(step_run):
    run = RunDir.load(step_run)
    assert run.scenario is not None
    schedule = run.scenario.campaign.build_schedule()
    cap = capacity.capacity(run.journals.attempts, schedule, run.journals.t0, ["lost == 0"])
    assert cap.knee_msgs_per_s == 50.0
    assert cap.max_stable_msgs_per_s == 47.0
    assert cap.p95_limit_ms is None


def test_a_backlog_from_a_stall_is_not_stable_even_when_it_is_delivered():
    """Messages of a step delivered in a burst 2 s late count as not accepted on time."""
    import pandas as pd

    rows = []
    for k in range(100):  # 10 msgs/s for 10 s, two stages of 5 s
        intended = k / 10
        start = intended if intended < 5 or intended >= 7 else 7.0  # stalled 5-7 s
        rows.append({"msg_id": f"m{k}", "attempt": 1, "server": "primary",
                     "intended": intended, "start": start, "end": start + 0.01,
                     "outcome": "accepted"})  # fmt: skip
    attempts = pd.DataFrame(rows)
    schedule = Schedule([Stage(5, 10), Stage(5, 10)])
    cap = capacity.capacity(attempts, schedule, 0.0, [])
    first, second = cap.steps
    assert first.stable
    # Ending at 7.01 s, the 11 messages intended 5.0-6.0 s are over 1 s late.
    assert second.accepted_ratio == pytest.approx(39 / 50)
    assert second.delivered_msgs_per_s == pytest.approx(10.0)
    assert not second.stable
    assert cap.knee_msgs_per_s == 10.0


def test_a_schedule_with_one_constant_stage_has_null_capacity(tmp_path):
    run_dir = runs.drill(tmp_path / "drill")
    summary = runs.summarised(run_dir)
    cap = summary.capacity
    assert cap.knee_msgs_per_s is None
    assert cap.max_stable_msgs_per_s is None
    assert cap.steps == []
    assert json.loads(summary_mod.as_json(summary))["capacity"]["steps"] == []  # plain JSON


def test_ramps_and_pauses_are_not_steps():
    schedule = Schedule([Stage(5, 0, 10), Stage(5, 10), Stage(3, 0), Stage(5, 20, 20)])
    windows = capacity.constant_windows(schedule)
    assert [(w.stage, w.start_s, w.rate) for w in windows] == [(1, 5.0, 10), (3, 13.0, 20)]


def test_p95_limit_is_the_tightest_upper_bound():
    assert capacity.p95_limit(["p95_latency_ms <= 300", "p95_latency_ms < 200"]) == 200
    assert capacity.p95_limit(["p99_latency_ms <= 100", "lost == 0"]) is None
