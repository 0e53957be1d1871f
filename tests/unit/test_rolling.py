"""The lowest 5 s rolling rate inside constant-rate stages (loadtest/analysis/rolling.py), on
hand-made timestamps whose answers are worked out in each test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loadtest.analysis import attempt_figures
from loadtest.analysis.capacity import Window, constant_windows
from loadtest.analysis.rolling import Floor, lowest_window
from loadtest.schedule import Schedule, Stage

T0 = 1_800_000_000.0


def every(start: float, stop: float, step: float = 0.1) -> np.ndarray:
    """Accepted ends at start + step/2, start + 3 step/2, ... before stop (from t0)."""
    return T0 + np.arange(start + step / 2, stop, step)


# A 10 s ramp (0 -> 10 msgs/s), then 20 s at a constant 10 msgs/s, then 10 s ramping down.
SCHEDULE = Schedule([Stage(10, 0, 10), Stage(20, 10), Stage(10, 10, 0)])


def test_only_constant_rate_stages_count():
    assert constant_windows(SCHEDULE) == [Window(1, 10.0, 20, 10)]


def test_a_steady_stage_gives_its_rate_and_the_ramps_are_left_out():
    """One message a second during the ramps (far below 10/s) and ten a second in the
    constant stage: the floor is the stage's 10/s, at its start."""
    ends = np.concatenate([every(0, 10, 1.0), every(10, 30), every(30, 40, 1.0)])
    assert lowest_window(ends, constant_windows(SCHEDULE), T0) == Floor(10.0, 10.0)


def test_a_dip_inside_the_stage_is_found_wherever_it_starts():
    """Nothing accepted from 20 s to 22 s: the worst 5 s window holds the 2 s gap and 3 s of
    mail, 30 messages, 6 msgs/s; the earliest such window starts just after the message
    ending at 16.95 s (it holds 17.05 ... 19.95: 30 messages, and none after until 22.05).
    Whole-second windows would see it too here, but the window need not start on one."""
    ends = np.concatenate([every(10, 20), every(22, 30)])
    assert lowest_window(ends, constant_windows(SCHEDULE), T0) == Floor(6.0, 16.95)


def test_a_short_stall_off_the_whole_seconds_counts_in_full():
    """A 1 s gap from 14.5 s to 15.5 s: every 5 s window holding it has 40 messages, and a
    window starting on a whole second holds it too; the fewest is 8 msgs/s."""
    ends = np.concatenate([every(10, 14.5), every(15.5, 30)])
    low = lowest_window(ends, constant_windows(SCHEDULE), T0)
    assert low is not None
    assert low.msgs_per_s == 8.0
    brute = min(
        np.count_nonzero((ends >= T0 + t) & (ends < T0 + t + 5))
        for t in np.arange(10, 25.0001, 0.001)
    )
    assert brute == 40


def test_a_gap_in_the_ramp_after_the_stage_is_not_a_dip():
    ends = np.concatenate([every(0, 10), every(10, 30)])  # nothing at all after 30 s
    assert lowest_window(ends, constant_windows(SCHEDULE), T0) == Floor(10.0, 10.0)


def test_a_stall_at_the_very_end_of_the_stage_is_inside_the_last_window():
    """Nothing after 27 s: the last window [25, 30) lies inside the stage and holds 20."""
    ends = every(10, 27)
    low = lowest_window(ends, constant_windows(SCHEDULE), T0)
    assert low is not None
    assert low.msgs_per_s == 4.0
    assert 24.9 < low.at_s <= 25.0


def test_no_constant_stage_of_five_seconds_has_no_value():
    ramps = Schedule([Stage(10, 0, 10), Stage(10, 10, 0)])
    short = Schedule([Stage(4.9, 10), Stage(3, 20)])
    ends = every(0, 20)
    assert lowest_window(ends, constant_windows(ramps), T0) is None
    assert lowest_window(ends, constant_windows(short), T0) is None


def test_the_lowest_stage_wins_and_a_silent_stage_is_zero():
    steps = Schedule([Stage(10, 10), Stage(10, 20)])
    ends = every(0, 10)  # the second stage's mail never came
    assert lowest_window(ends, constant_windows(steps), T0) == Floor(0.0, 10.0)


def test_only_accepted_attempts_count_by_their_end():
    ends = every(10, 30)
    attempts = pd.DataFrame(
        {"end": np.concatenate([ends, every(20, 23)]),
         "outcome": ["accepted"] * len(ends) + ["deferred"] * 30}
    )  # fmt: skip
    attempts["start"] = attempts["end"] - 0.1
    attempts["intended"] = attempts["start"]
    attempts["attempt"] = 1
    attempts["server"] = "primary"
    attempts["msg_id"] = [f"m{i}" for i in range(len(attempts))]

    def floor(frame: pd.DataFrame) -> Floor | None:
        part = attempt_figures.Part()
        part.add(frame)
        figures = part.result(SCHEDULE, T0, partial=False)
        low = figures.throughput.min_rolling_msgs_per_s
        return None if low is None else Floor(low, figures.throughput.min_rolling_at_s or 0.0)

    assert floor(attempts) == Floor(10.0, 10.0)
    assert floor(attempts.iloc[:0]) is None


@pytest.mark.parametrize("seed", range(5))
def test_the_floor_is_the_brute_force_minimum(seed):
    """Random arrivals with random gaps: the floor equals the fewest messages over every
    window start on a 1 ms grid and just after every message (an independent count)."""
    rng = np.random.default_rng(seed)
    ends = np.sort(T0 + 10 + rng.uniform(0, 20, 150))
    ends = ends[(ends < T0 + 15) | (ends > T0 + 17.5)]
    stage = [Window(0, 10.0, 20, 10)]
    low = lowest_window(ends, stage, T0)
    assert low is not None
    starts = np.concatenate([T0 + np.arange(10, 25.0001, 0.001), ends[ends < T0 + 25] + 1e-7])
    counts = [np.count_nonzero((ends >= t) & (ends < t + 5)) for t in starts]
    assert low.msgs_per_s == pytest.approx(min(counts) / 5)


def test_an_interrupted_run_is_judged_up_to_where_it_stopped_sending():
    """Sending stopped at 18 s (a Ctrl-C): the stage cut there still has its steady 10/s;
    uncut, the windows after 18 s would find a stall of 0 msgs/s that never was."""
    from loadtest.analysis.rolling import clip

    ends = every(10, 18)
    stages = constant_windows(SCHEDULE)
    assert lowest_window(ends, stages, T0) == Floor(0.0, 17.95)
    assert clip(stages, 18.0) == [Window(1, 10.0, 8.0, 10)]
    assert lowest_window(ends, clip(stages, 18.0), T0) == Floor(10.0, 10.0)
    assert clip(stages, 9.0) == []  # stopped before the stage began: nothing to judge
