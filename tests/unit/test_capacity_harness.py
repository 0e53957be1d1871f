"""A harness-bound step is never the server's knee: the search on synthetic servers whose
harness gives out first, the harness's load from synthetic samples, and the report's words."""

from __future__ import annotations

import dataclasses

from loadtest.capacity import report
from loadtest.capacity.harness import (
    DEMAND_BOUND,
    HarnessLoad,
    ProcTimes,
    Sample,
    bound_why,
    load_between,
)
from loadtest.capacity.model import CapacityReport, Curve, CurveStep, RuleModel
from loadtest.capacity.model import SearchSettingsModel as Settings
from loadtest.capacity.search import Ending, Search, SearchSettings
from loadtest.capacity.stability import StepFigures
from tests.unit.test_capacity_search import saturating

WHY = "a sender process wanted 1.00 of a core (ran 0.95, waited 0.05 for a CPU)"


def harness_limited(capacity: float, ceiling: float, stalls: set[float] | None = None):
    """A server of `capacity` driven by a sender that cannot offer more than `ceiling`
    msgs/s: above it the backlog grows and the step is harness-bound. `stalls`: rates whose
    first step only is harness-bound (a passing stall of the machine)."""
    server = saturating(capacity)
    seen: set[float] = set()

    def figures(rate: float) -> StepFigures:
        f = server(min(rate, ceiling))
        stalled = rate in (stalls or set()) and rate not in seen
        seen.add(rate)
        if rate <= ceiling and not stalled:
            return dataclasses.replace(f, rate=rate, sender_cpu=0.5, sender_wait=0.05)
        growth = max(rate - min(capacity, ceiling), 0.2 * rate if stalled else 0.0)
        return dataclasses.replace(
            f,
            rate=rate,
            offered_msgs_per_s=rate,
            backlog_growth_msgs_per_s=growth,
            sender_cpu=0.95,
            sender_wait=0.05,
            harness_bound=WHY,
        )

    return figures


def run(settings: SearchSettings, server) -> Search:
    search = Search(settings)
    while (rate := search.next_rate()) is not None:
        search.record(server(rate))
    return search


def test_a_harness_bound_step_is_not_the_servers_knee() -> None:
    # The server would take 1,250 msgs/s; the sender gives out at 600.
    search = run(SearchSettings(start_rate=100, max_rate=2000, max_steps=30),
                 harness_limited(1250, 600))  # fmt: skip
    result = search.result()
    assert result.ending is Ending.HARNESS_BOUND
    assert result.first_unstable_msgs_per_s is None  # no server instability was seen
    assert result.failure is None
    assert result.harness_bound_msgs_per_s is not None
    assert result.knee_msgs_per_s is not None
    # The knee is at least the highest stable rate, refined up to the harness's ceiling.
    assert result.knee_msgs_per_s <= 600 < result.harness_bound_msgs_per_s
    assert result.harness_bound_msgs_per_s <= result.knee_msgs_per_s * 1.05
    # Every harness-bound rate was run twice before it was believed.
    bound = [st.figures.rate for st in search.steps if st.figures.harness_bound]
    assert bound
    assert all(bound.count(rate) == 2 for rate in bound)


def test_a_passing_stall_of_the_harness_is_run_again_and_forgotten() -> None:
    # Climbing 100, 200, 400: the step at 200 stalls once; the search goes on to the knee.
    search = run(SearchSettings(start_rate=100, max_rate=2000, max_steps=30),
                 harness_limited(300, 5000, stalls={200.0}))  # fmt: skip
    result = search.result()
    assert result.ending is Ending.CONVERGED
    assert [st.figures.rate for st in search.steps][:4] == [100, 200, 200, 400]
    assert result.knee_msgs_per_s is not None
    assert abs(result.knee_msgs_per_s - 300) <= 0.05 * 300
    assert result.harness_bound_msgs_per_s is None
    assert result.failure == "saturated"


def test_the_servers_knee_below_the_harness_ceiling_is_found_as_before() -> None:
    result = run(SearchSettings(start_rate=100, max_rate=2000, max_steps=30),
                 harness_limited(250, 1000)).result()  # fmt: skip
    assert result.ending is Ending.CONVERGED
    assert result.knee_msgs_per_s is not None
    assert abs(result.knee_msgs_per_s - 250) <= 0.05 * 250
    assert result.harness_bound_msgs_per_s is None


def sample(at: float, sender: tuple[float, float], sink: tuple[float, float], busy: float):
    return Sample(at, machine_busy_s=busy, machine_total_s=2 * at,
                  procs={10: ProcTimes("sender", "locust", *sender),
                         20: ProcTimes("sink", "primary", *sink)})  # fmt: skip


def test_load_is_each_process_time_per_second_of_the_window() -> None:
    samples = [
        sample(0.0, (0.0, 0.0), (0.0, 0.0), 0.0),
        sample(1.0, (0.9, 0.1), (0.2, 0.0), 1.0),  # the window's first sample
        sample(3.0, (2.3, 0.3), (0.6, 0.1), 3.0),  # its last
        sample(4.0, (9.0, 9.0), (9.0, 9.0), 8.0),  # after the window
    ]
    load = load_between(samples, 0.5, 3.5)
    assert load == HarnessLoad(0.7, 0.1, 0.2, 0.05, 0.5)
    assert bound_why(load, sender_idle=False) is None
    assert bound_why(load, sender_idle=True) == (
        "the backlog grew while the connections were mostly idle"
    )
    # Waiting for a CPU counts: a starved sender is as late as a busy one.
    starved = dataclasses.replace(load, sender_cpu=0.5, sender_wait=DEMAND_BOUND - 0.5)
    assert bound_why(starved, sender_idle=False) == (
        "a sender process wanted 0.85 of a core (ran 0.50, waited 0.35 for a CPU)"
    )
    sink = dataclasses.replace(load, sink_cpu=0.95)
    assert (bound_why(sink, sender_idle=False) or "").startswith("a sink process wanted 1.00")
    # Fewer than two samples in the window, or a process gone: nothing is claimed.
    assert load_between(samples, 3.5, 3.9) == HarnessLoad(None, None, None, None, None)


def test_the_report_says_the_load_generator_limited_the_step() -> None:
    search = run(SearchSettings(start_rate=100, max_rate=2000, max_steps=30),
                 harness_limited(1250, 600))  # fmt: skip
    result = search.result()
    steps = [
        CurveStep(
            **vars(st.figures),
            stable=st.verdict.stable,
            failure=st.verdict.failure,
            why=st.verdict.why,
            run_dir="steps/primary/x",
        )
        for st in search.steps
    ]
    curve = Curve(
        name="primary", servers=["primary"], knee_msgs_per_s=result.knee_msgs_per_s,
        first_unstable_msgs_per_s=None, max_stable_msgs_per_s=result.max_stable_msgs_per_s,
        failure=None, ending=result.ending, steps=steps,
        harness_bound_msgs_per_s=result.harness_bound_msgs_per_s,
    )  # fmt: skip
    rep = CapacityReport(
        scenario="s", started_at=0.0,
        settings=Settings(start_rate=100, factor=2, precision=0.05, max_rate=2000,
                          min_rate=1, max_steps=30, step_s=3),
        rule=RuleModel(min_accepted_share=0.95, max_backlog_growth=0.02, p95_limit_ms=None,
                       error_share=0.01, idle_share=0.8, on_time_s=1.0),
        curves=[curve],
    )  # fmt: skip
    md = report.markdown(rep)
    knee = f"{result.knee_msgs_per_s:g}"
    assert report.ending(rep, curve) == (
        f"the load generator, not the server, limited the step at "
        f"{result.harness_bound_msgs_per_s:g} msgs/s: the knee is at least {knee}"
    )
    assert (
        f"**harness_bound** ({WHY}): the load generator, not the server, limited this step: "
        f"the knee is at least {knee}"
    ) in md
    assert "sender 0.95+0.05" in md  # the harness column, ran+waited of a core
    # A capacity.json written before the harness was measured still reads.
    old = CurveStep.model_validate(
        {k: v for k, v in steps[0].model_dump().items() if k not in HarnessLoad.__annotations__}
        | {"harness_bound": None}
    )
    assert old.sender_cpu is None
