"""`maildrill capacity`: each curve is a search (loadtest.capacity.search) whose every step
is a whole `maildrill run` of the scenario, cut to one flat stage at the step's rate.

Why a run per step, and not one run with a schedule that adapts: a step is then exactly
what `maildrill run` does with a flat schedule (the same sinks, behaviours, routing, Locust
user, journals and analysis; nothing re-implemented), each step starts from empty queues
and fresh servers (a backlog left by an unstable step never leaks into the next one, so a
step's figures are its own), and every step leaves a run directory that `maildrill report`
reads like any other. The cost is the start-up of each run (sinks, pre-flight, Locust:
about 4-5 s per step on a loaded 2-core machine), paid a dozen times per curve at most.

Per step the scenario is changed only where a capacity step must differ from the drill:
`campaign.schedule` is one stage of `step_s` seconds at the rate, `faults` is empty (the
servers' configured behaviours stay: they are what is measured), `probe_interval_ms` is 0,
`campaign.drain_s` is short, and for a server measured alone the routing is pinned to it
(`routing.policy: failover`, `routing.servers: [NAME]`, no by-stream routes): the others
still run, idle, exactly as configured.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import limits
from loadtest.analysis.capacity import on_time_s, p95_limit
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary import as_json, summarise
from loadtest.capacity.harness import (
    HarnessMonitor,
    Sample,
    bound_why,
    harness_line,
    load_between,
)
from loadtest.capacity.measure import STEADY_FROM, step_figures
from loadtest.capacity.model import (
    ALL,
    CapacityReport,
    Curve,
    CurveStep,
    RuleModel,
    SearchSettingsModel,
)
from loadtest.capacity.search import Ending, Search, SearchSettings
from loadtest.capacity.stability import Failure, StabilityRule, StepFigures, judge
from loadtest.orchestrate import Drill
from loadtest.scenario import Scenario, ScenarioError, parse_scenario

DRAIN_S = 2.0  # after each step: the last attempts finish; the step's figures ignore it


class Interrupted(Exception):
    """A step's run was interrupted (Ctrl-C, SIGTERM): the capacity run stops there."""


@dataclass
class CapacityRun:
    raw: dict[str, Any]  # the scenario's data, --set and --seed applied
    scenario: Scenario
    source: str  # the scenario's file, for messages
    out_dir: Path
    settings: SearchSettings
    step_s: float
    servers: list[str]  # measured alone, in this order; then `all` when more than one
    say: Callable[[str], None]
    yes: bool = False  # a person confirmed load outside this machine (`maildrill capacity --yes`)

    def __post_init__(self) -> None:
        limit = p95_limit(self.scenario.slo)
        self.rule = StabilityRule(p95_limit_ms=limit)
        self.on_time_s = on_time_s(limit)
        self.report = CapacityReport(
            scenario=self.scenario.name,
            started_at=time.time(),
            settings=SearchSettingsModel(**vars(self.settings), step_s=self.step_s),
            rule=RuleModel(**vars(self.rule), on_time_s=self.on_time_s),
        )

    def curves(self) -> list[tuple[str, list[str] | None]]:
        """(curve name, the server it is pinned to, or None: routed as the scenario says)."""
        alone: list[tuple[str, list[str] | None]] = [(name, [name]) for name in self.servers]
        routed = self.scenario.routing.ordered_servers(self.scenario.servers)
        return alone + ([(ALL, None)] if len(routed) > 1 else [])

    def run(self, on_curve: Callable[[CapacityReport], None] | None = None) -> CapacityReport:
        """Every curve in turn; `on_curve` after each (to save what is measured so far).
        Raises Interrupted (the report so far is `self.report`, marked partial)."""
        for name, pinned in self.curves():
            curve = Curve(
                name=name,
                servers=pinned or self.scenario.routing.ordered_servers(self.scenario.servers),
                knee_msgs_per_s=None,
                first_unstable_msgs_per_s=None,
                max_stable_msgs_per_s=None,
                failure=None,
                ending=Ending.MAX_STEPS,
            )
            self.report.curves.append(curve)
            try:
                self._measure(curve, pinned)
            except (Interrupted, KeyboardInterrupt) as exc:
                # A step's Drill turns Ctrl-C into an interrupted run; between steps it
                # arrives as KeyboardInterrupt. Either way: what is measured is kept.
                self.report.partial = True
                raise Interrupted(str(exc) or "SIGINT") from None
            finally:
                self.report.finished_at = time.time()
                if on_curve is not None:
                    on_curve(self.report)
        return self.report

    def _measure(self, curve: Curve, pinned: list[str] | None) -> None:
        search = Search(self.settings, self.rule)
        while (rate := search.next_rate()) is not None:
            index = len(search.steps) + 1
            step_dir = self.out_dir / "steps" / curve.name / f"step-{index:02d}"
            figures = self._step(step_dir, pinned, rate, f"{curve.name}-{index:02d}")
            verdict = search.record(figures)
            curve.steps.append(
                CurveStep(
                    **vars(figures),
                    stable=verdict.stable,
                    failure=verdict.failure,
                    why=verdict.why,
                    run_dir=str(step_dir.relative_to(self.out_dir)),
                )
            )
            self.say(
                f"{curve.name}: step {index} at {rate:g} msgs/s: "
                f"delivered {figures.delivered_msgs_per_s:g}, accepted "
                f"{figures.accepted_msgs_per_s:g}, p95 {figures.p95_latency_ms} ms: "
                + ("stable" if verdict.stable else f"UNSTABLE ({verdict.failure}: {verdict.why})")
                + f"; {harness_line(figures)}"
                + (f"; HARNESS-BOUND: {figures.harness_bound}" if figures.harness_bound else "")
            )
            result = search.result()
            curve.knee_msgs_per_s = result.knee_msgs_per_s
            curve.first_unstable_msgs_per_s = result.first_unstable_msgs_per_s
            curve.max_stable_msgs_per_s = result.max_stable_msgs_per_s
            curve.failure = result.failure
            curve.ending = result.ending
            curve.harness_bound_msgs_per_s = result.harness_bound_msgs_per_s

    def step_data(self, pinned: list[str] | None, rate: float) -> dict[str, Any]:
        """The scenario of one step: the drill's, cut to a flat stage at `rate`."""
        raw = copy.deepcopy(self.raw)
        campaign = raw.setdefault("campaign", {})
        campaign["schedule"] = [{"duration_s": self.step_s, "rate": round(rate, 3)}]
        campaign["drain_s"] = DRAIN_S
        raw["faults"] = []
        raw["probe_interval_ms"] = 0
        if pinned is not None:
            routing = raw.setdefault("routing", {}) or {}
            raw["routing"] = {**routing, "policy": "failover", "servers": pinned, "streams": {}}
        return raw

    def _step(
        self, step_dir: Path, pinned: list[str] | None, rate: float, label: str
    ) -> StepFigures:
        raw = self.step_data(pinned, rate)
        scenario = parse_scenario(raw, f"{self.source} (capacity step at {rate:g} msgs/s)")
        problem = limits.machine_problem(scenario)
        if problem:
            raise ScenarioError(f"{self.source}: {problem}")
        step_dir.mkdir(parents=True, exist_ok=True)
        with (step_dir / "drill.log").open("w") as log:
            # Its workers take the run's yes, as `maildrill run`'s do (worker_consent).
            drill = Drill(
                scenario, raw, step_dir, f"{scenario.name}-cap-{label}", out=log, yes=self.yes
            )
            monitor = HarnessMonitor(drill.children).start()
            try:
                harness = drill.run()
            finally:
                samples = monitor.stop()
        if harness.get("interrupted_by"):
            raise Interrupted(str(harness["interrupted_by"]))
        run = RunDir.load(step_dir)
        (step_dir / "summary.json").write_text(as_json(summarise(run)))
        figures = step_figures(run.journals.attempts, run.t0, rate, self.step_s,
                               self.on_time_s, connections=scenario.users)  # fmt: skip
        return self._with_harness(figures, samples, run.t0)

    def _with_harness(self, figures: StepFigures, samples: list[Sample], t0: float) -> StepFigures:
        """The step's figures with its harness's load over the steady part, and whether
        the harness, not the server, limited it (loadtest.capacity.harness)."""
        load = load_between(samples, t0 + STEADY_FROM * self.step_s, t0 + self.step_s)
        idle = judge(figures, self.rule).failure is Failure.SENDER
        return dataclasses.replace(figures, **vars(load), harness_bound=bound_why(load, idle))
