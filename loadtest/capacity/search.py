"""The adaptive step search: a pure state machine that picks each step's offered rate.

Climb: start at `start_rate` and multiply by `factor` after every stable step, until a
step is unstable (or `max_rate` is stable: then the knee is at least that, and the search
says so). A first step already unstable: divide by `factor` until one is stable (down to
`min_rate`). Refine: bisect between the highest stable and the lowest unstable rate until
the unstable one is within `precision` (5 %) of the stable one. While refining, a step
found unstable is run once more at the same rate (`confirm`), and the second verdict is
the rate's: near the knee a server has little spare capacity, so one stall of a shared
machine (a pause of the sink or of the sender) leaves a backlog a short step cannot work
off, and would pass for the knee; saturation repeats, a stall does not. Every search ends: no
rate above `max_rate` is ever asked for, and at most `max_steps` steps are run, whatever
the steps measure.

A step the harness could not drive (`harness_bound`, loadtest.capacity.harness: the load
generator or a local sink out of CPU) says nothing about the server: found unstable, it is
run once more (a passing stall of the machine), and if still harness-bound, its rate is a
ceiling the search cannot measure above, not the server's instability. The search refines
below it as below an unstable rate, and ends `harness_bound` when the ceiling, not a
server-unstable rate, is what bounds the knee: the knee is then at least the highest
stable rate.

No I/O, no clock: `next_rate()` says what to run next (None: done), `record()` takes what
that step measured, `result()` says what was found. Like the routing and retry policies,
it is driven by the caller (loadtest.capacity.driver) and tested on synthetic servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from loadtest.capacity.stability import Failure, StabilityRule, StepFigures, Verdict, judge


class Ending(StrEnum):
    CONVERGED = "converged"  # stable and unstable rates within `precision`
    MAX_RATE = "max_rate"  # stable at max_rate: the knee is at least that
    MIN_RATE = "min_rate"  # unstable down to min_rate: no stable rate found
    MAX_STEPS = "max_steps"  # out of steps before converging
    HARNESS_BOUND = "harness_bound"  # the harness, not the server, bounded it: knee >= that


@dataclass(frozen=True)
class SearchSettings:
    start_rate: float = 50.0
    factor: float = 2.0
    precision: float = 0.05
    max_rate: float = 2000.0
    min_rate: float = 1.0
    max_steps: int = 16
    confirm: bool = True  # run an unstable refining step again; the second verdict counts

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start_rate <= self.max_rate:
            raise ValueError("rates: need 0 < min_rate <= start_rate <= max_rate")
        if self.factor <= 1 + self.precision:
            raise ValueError("factor must exceed 1 + precision")
        if not 0 < self.precision < 1:
            raise ValueError("precision must be between 0 and 1")
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")


@dataclass(frozen=True)
class Step:
    figures: StepFigures
    verdict: Verdict


@dataclass(frozen=True)
class SearchResult:
    knee_msgs_per_s: float | None  # the highest stable offered rate
    first_unstable_msgs_per_s: float | None  # the lowest unstable offered rate above it
    # The highest delivered rate of a step within the p95 bound, stable or not: past the
    # knee, the plateau the servers deliver while the backlog grows (the same definition
    # as summary.json's capacity.max_stable_msgs_per_s).
    max_stable_msgs_per_s: float | None
    failure: Failure | None  # how the first unstable step past the knee failed
    ending: Ending
    steps: int
    # The lowest rate the harness could not drive (harness-bound and unstable, twice).
    harness_bound_msgs_per_s: float | None = None


def within(p95_ms: float | None, limit_ms: float | None) -> bool:
    return limit_ms is None or (p95_ms is not None and p95_ms <= limit_ms)


@dataclass
class Search:
    settings: SearchSettings
    rule: StabilityRule = field(default_factory=StabilityRule)
    steps: list[Step] = field(default_factory=list)
    _next: float | None = None
    _ending: Ending | None = None

    def __post_init__(self) -> None:
        self._next = self.settings.start_rate

    def next_rate(self) -> float | None:
        """The offered rate of the next step; None once the search has ended."""
        return self._next

    def record(self, figures: StepFigures) -> Verdict:
        """What the step at `next_rate()` measured; decides the step after it."""
        if self._next is None:
            raise RuntimeError("the search has ended")
        verdict = judge(figures, self.rule)
        self.steps.append(Step(figures, verdict))
        self._next, self._ending = self._decide(self._next, verdict.stable)
        return verdict

    def _decide(self, rate: float, stable: bool) -> tuple[float | None, Ending | None]:
        """What to run next, or how the search ended: out of steps only when another step
        is needed (a last step that converged, or reached max_rate, ends as such)."""
        following, ending = self._following(rate, stable)
        if following is not None and len(self.steps) >= self.settings.max_steps:
            return None, Ending.MAX_STEPS
        return following, ending

    def _following(self, rate: float, stable: bool) -> tuple[float | None, Ending | None]:
        s = self.settings
        harness = self.steps[-1].figures.harness_bound is not None
        if (
            not stable
            and self._tries(rate) == 1
            and (harness or (s.confirm and self._refining_before()))
        ):
            return rate, None
        lo, server_hi = self._bounds()
        ceiling = self._ceiling(server_hi)
        hi = ceiling if ceiling is not None else server_hi
        if lo is not None and hi is not None and hi <= lo * (1 + s.precision):
            return None, Ending.CONVERGED if ceiling is None else Ending.HARNESS_BOUND
        if hi is None:  # climbing: everything so far was stable
            if rate >= s.max_rate:
                return None, Ending.MAX_RATE
            return min(rate * s.factor, s.max_rate), None
        if lo is None:  # descending: everything so far was unstable
            if rate <= s.min_rate:
                return None, Ending.MIN_RATE
            return max(rate / s.factor, s.min_rate), None
        return (lo + hi) / 2, None

    def _ceiling(self, server_hi: float | None) -> float | None:
        """The lowest rate whose verdict is harness-bound and unstable, when it is below
        every server-unstable rate: the highest rate the search can still measure."""
        bound = [r for r, st in self.verdicts().items() if _harness_limited(st)]
        low = min(bound) if bound else None
        if low is None or (server_hi is not None and server_hi <= low):
            return None
        return low

    def _tries(self, rate: float) -> int:
        return sum(st.figures.rate == rate for st in self.steps)

    def _refining_before(self) -> bool:
        """Whether the latest step was a refining one: a stable and an unstable rate were
        both known before it."""
        earlier = self.steps[:-1]
        return any(st.verdict.stable for st in earlier) and any(
            not st.verdict.stable for st in earlier
        )

    def verdicts(self) -> dict[float, Step]:
        """Each rate's verdict: the last step run at it (a confirmed one's second)."""
        return {st.figures.rate: st for st in self.steps}

    def _bounds(self) -> tuple[float | None, float | None]:
        """The highest stable rate below the lowest unstable one, and that unstable one."""
        by_rate = self.verdicts()
        unstable = [
            rate
            for rate, st in by_rate.items()
            if not st.verdict.stable and not _harness_limited(st)
        ]
        hi = min(unstable) if unstable else None
        bound = [rate for rate, st in by_rate.items() if _harness_limited(st)]
        top = min([*unstable, *bound]) if unstable or bound else None
        stable = [
            rate
            for rate, st in by_rate.items()
            if st.verdict.stable and (top is None or rate < top)
        ]
        return (max(stable) if stable else None), hi

    @property
    def done(self) -> bool:
        return self._next is None

    def result(self) -> SearchResult:
        lo, hi = self._bounds()
        first = self.verdicts().get(hi) if hi is not None else None
        ceiling = self._ceiling(hi)
        delivered = [
            st.figures.delivered_msgs_per_s
            for st in self.steps
            if within(st.figures.p95_latency_ms, self.rule.p95_limit_ms)
        ]
        return SearchResult(
            knee_msgs_per_s=lo,
            first_unstable_msgs_per_s=hi,
            max_stable_msgs_per_s=max(delivered) if delivered else None,
            failure=first.verdict.failure if first is not None else None,
            ending=self._ending or Ending.MAX_STEPS,
            steps=len(self.steps),
            harness_bound_msgs_per_s=ceiling,
        )


def _harness_limited(step: Step) -> bool:
    """An unstable step the harness, not the server, limited."""
    return not step.verdict.stable and step.figures.harness_bound is not None
