"""The adaptive step search on synthetic servers: figures made by arithmetic, no run."""

from __future__ import annotations

import math
import random

import pytest

from loadtest.capacity.search import Ending, Search, SearchSettings
from loadtest.capacity.stability import Failure, StabilityRule, StepFigures, judge


def saturating(capacity: float, latency_ms: float = 20.0, connections: int = 25):
    """A server that takes at most `capacity` msgs/s; the rest waits (no errors)."""

    def figures(rate: float) -> StepFigures:
        taken = min(rate, capacity)
        return StepFigures(
            rate=rate,
            offered_msgs_per_s=rate,
            accepted_msgs_per_s=taken,
            delivered_msgs_per_s=taken,
            backlog_growth_msgs_per_s=max(0.0, rate - capacity),
            p95_latency_ms=latency_ms,
            p95_response_ms=latency_ms,
            attempts=int(rate),
            busy_connections=connections * taken / capacity,
            connections=connections,
        )

    return figures


def throttling(capacity: float):
    """A server that answers 4xx to what exceeds `capacity` (retried later)."""

    def figures(rate: float) -> StepFigures:
        base = saturating(capacity)(rate)
        over = max(0.0, rate - capacity)
        return StepFigures(**{**base.__dict__, "throttled_share": over / rate})

    return figures


def noisy(capacity: float, seed: int, spread: float = 0.01):
    """Saturating, every figure off by up to `spread` either way."""
    rng = random.Random(seed)
    exact = saturating(capacity)

    def figures(rate: float) -> StepFigures:
        f = exact(rate)
        jitter = 1 + rng.uniform(-spread, spread)
        taken = min(rate, f.delivered_msgs_per_s * jitter)
        return StepFigures(
            **{
                **f.__dict__,
                "accepted_msgs_per_s": taken,
                "delivered_msgs_per_s": taken,
                "backlog_growth_msgs_per_s": max(0.0, rate - capacity * jitter),
            }
        )

    return figures


def run(search: Search, server) -> Search:
    while (rate := search.next_rate()) is not None:
        search.record(server(rate))
    return search


@pytest.mark.parametrize("capacity", [7.0, 55.0, 80.0, 333.0, 1250.0, 1999.0])
@pytest.mark.parametrize("start", [1.0, 10.0, 100.0, 1000.0])
def test_the_knee_is_found_within_five_percent(capacity: float, start: float) -> None:
    search = run(Search(SearchSettings(start_rate=start, max_rate=5000, max_steps=40)),
                 saturating(capacity))  # fmt: skip
    result = search.result()
    assert result.ending is Ending.CONVERGED
    assert result.knee_msgs_per_s is not None
    assert result.first_unstable_msgs_per_s is not None
    assert abs(result.knee_msgs_per_s - capacity) <= 0.05 * capacity
    assert result.first_unstable_msgs_per_s <= result.knee_msgs_per_s * 1.05
    assert result.failure is Failure.SATURATED
    # Steps: climb (or descend) by factor 2 until the knee is bracketed, then halve a gap
    # of at most the stable rate until it is within 5 % of it: ceil(log2(1 / 0.05)) = 5,
    # each run twice at most (an unstable one is confirmed).
    bracket = math.ceil(abs(math.log2(capacity / start))) + 2
    assert result.steps <= bracket + 10
    unconfirmed = run(Search(SearchSettings(start_rate=start, max_rate=5000, max_steps=40,
                                            confirm=False)), saturating(capacity))  # fmt: skip
    assert unconfirmed.result().steps <= bracket + 5
    assert unconfirmed.result().knee_msgs_per_s == result.knee_msgs_per_s


@pytest.mark.parametrize("seed", range(20))
def test_noise_of_one_percent_still_lands_within_five(seed: int) -> None:
    capacity = 100 + 40 * seed
    result = run(Search(SearchSettings(start_rate=20)), noisy(capacity, seed)).result()
    assert result.knee_msgs_per_s is not None
    assert abs(result.knee_msgs_per_s - capacity) <= 0.05 * capacity


def test_never_above_max_rate_and_says_so() -> None:
    search = run(Search(SearchSettings(start_rate=10, max_rate=300)), saturating(10_000))
    rates = [st.figures.rate for st in search.steps]
    assert max(rates) == 300
    assert rates == [10, 20, 40, 80, 160, 300]
    result = search.result()
    assert result.ending is Ending.MAX_RATE
    assert result.knee_msgs_per_s == 300
    assert result.first_unstable_msgs_per_s is None


@pytest.mark.parametrize("max_steps", [1, 2, 3, 5])
def test_at_most_max_steps(max_steps: int) -> None:
    settings = SearchSettings(start_rate=1, max_rate=100_000, max_steps=max_steps)
    search = run(Search(settings), saturating(50_000))
    assert len(search.steps) == max_steps
    assert search.result().ending is Ending.MAX_STEPS


def test_unstable_from_the_start_descends_then_bisects() -> None:
    search = run(Search(SearchSettings(start_rate=400)), saturating(30))
    rates = [st.figures.rate for st in search.steps]
    assert rates[:5] == [400, 200, 100, 50, 25]
    assert abs(search.result().knee_msgs_per_s - 30) <= 1.5  # type: ignore[operator]


def test_unstable_down_to_min_rate_ends() -> None:
    search = run(Search(SearchSettings(start_rate=8, min_rate=1)), saturating(0.1))
    assert [st.figures.rate for st in search.steps] == [8, 4, 2, 1]
    result = search.result()
    assert result.ending is Ending.MIN_RATE
    assert result.knee_msgs_per_s is None


def test_the_first_failure_past_the_knee_is_named() -> None:
    result = run(Search(SearchSettings(start_rate=10)), throttling(120)).result()
    assert result.failure is Failure.THROTTLED
    assert abs(result.knee_msgs_per_s - 120) <= 6  # type: ignore[operator]


def test_bisection_keeps_to_the_bracket() -> None:
    search = run(Search(SearchSettings(start_rate=100)), saturating(150))
    rates = [st.figures.rate for st in search.steps]
    assert rates[:3] == [100, 200, 150]
    lo, hi = 100.0, 200.0
    previous = None
    for st in search.steps[2:]:  # every refining step lies strictly inside the bracket,
        if st.figures.rate == previous:  # or confirms the unstable one before it
            assert not st.verdict.stable
            continue
        assert lo < st.figures.rate < hi
        lo, hi = (st.figures.rate, hi) if st.verdict.stable else (lo, st.figures.rate)
        previous = None if st.verdict.stable else st.figures.rate


def test_an_unstable_refining_step_is_confirmed_and_a_stall_is_not_the_knee() -> None:
    search = Search(SearchSettings(start_rate=100))
    server = saturating(180)
    search.record(server(100))  # stable: climb
    search.record(server(200))  # unstable while climbing: not repeated
    assert search.next_rate() == 150
    search.record(saturating(120)(150))  # a stall: unstable once...
    assert search.next_rate() == 150  # ...so run again
    search.record(server(150))  # stable this time: the rate's verdict
    assert search.next_rate() == 175
    search.record(server(175))  # stable
    assert search.next_rate() == 187.5
    search.record(server(187.5))  # unstable: confirmed
    assert search.next_rate() == 187.5
    search.record(server(187.5))
    assert search.next_rate() == 181.25
    search.record(server(181.25))  # stable (within 2 % of 180)
    assert search.done
    result = search.result()
    assert result.knee_msgs_per_s == 181.25
    assert result.first_unstable_msgs_per_s == 187.5
    assert len(search.steps) == 8


def test_record_after_the_end_is_refused() -> None:
    search = run(Search(SearchSettings(start_rate=5, max_rate=5)), saturating(100))
    with pytest.raises(RuntimeError):
        search.record(saturating(100)(5))


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"start_rate": 0}, "rates"),
        ({"start_rate": 10, "max_rate": 5}, "rates"),
        ({"factor": 1.01}, "factor"),
        ({"precision": 0}, "precision"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_settings_refuse_a_search_that_cannot_end(bad: dict[str, float], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SearchSettings(**bad)  # type: ignore[arg-type]


# -- the stability rule ------------------------------------------------------------------


def test_backlog_growth_is_the_sharp_test() -> None:
    rule = StabilityRule()
    f = saturating(1000)
    assert judge(f(1000), rule).stable
    assert judge(f(1020), rule).stable  # 20 msgs/s of 1020 is under 2 %
    verdict = judge(f(1030), rule)  # 30 of 1030 is over
    assert not verdict.stable
    assert verdict.failure is Failure.SATURATED
    assert "backlog grew" in verdict.why


def test_p95_over_the_bound_is_unstable_and_named_latency() -> None:
    verdict = judge(saturating(100, latency_ms=300)(50), StabilityRule(p95_limit_ms=250))
    assert not verdict.stable
    assert verdict.failure is Failure.LATENCY
    assert judge(saturating(100, latency_ms=300)(50), StabilityRule()).stable


def test_accepted_share_under_95_percent_is_unstable() -> None:
    f = StepFigures(rate=100, offered_msgs_per_s=100, accepted_msgs_per_s=94,
                    delivered_msgs_per_s=100, backlog_growth_msgs_per_s=0, p95_latency_ms=5,
                    p95_response_ms=5, attempts=100, timeout_share=0.06)  # fmt: skip
    verdict = judge(f, StabilityRule())
    assert not verdict.stable
    assert verdict.failure is Failure.TIMEOUTS


def test_errors_are_named_in_order_refused_first() -> None:
    f = StepFigures(rate=100, offered_msgs_per_s=100, accepted_msgs_per_s=50,
                    delivered_msgs_per_s=50, backlog_growth_msgs_per_s=50, p95_latency_ms=5,
                    p95_response_ms=5, refused_share=0.02, throttled_share=0.3)  # fmt: skip
    assert judge(f, StabilityRule()).failure is Failure.REFUSED


def test_backlog_with_idle_connections_is_the_sender() -> None:
    f = saturating(1000, connections=25)(1500)
    idle = StepFigures(**{**f.__dict__, "busy_connections": 5.0})
    assert judge(idle, StabilityRule()).failure is Failure.SENDER
    assert judge(f, StabilityRule()).failure is Failure.SATURATED


def test_a_last_allowed_step_that_ends_the_search_says_how_it_ended() -> None:
    # The max_rate climb above takes 6 steps; so does converging on a 1,250 msgs/s server
    # from 100 in the run below: given exactly that many, each ends as it did, not as
    # "out of steps".
    climb = run(Search(SearchSettings(start_rate=10, max_rate=300, max_steps=6)),
                saturating(10_000))  # fmt: skip
    assert (len(climb.steps), climb.result().ending) == (6, Ending.MAX_RATE)
    free = run(Search(SearchSettings(start_rate=100)), saturating(1250))
    assert free.result().ending is Ending.CONVERGED
    exact = run(Search(SearchSettings(start_rate=100, max_steps=len(free.steps))),
                saturating(1250))  # fmt: skip
    assert exact.result().ending is Ending.CONVERGED
    short = run(Search(SearchSettings(start_rate=100, max_steps=len(free.steps) - 1)),
                saturating(1250))  # fmt: skip
    assert short.result().ending is Ending.MAX_STEPS
