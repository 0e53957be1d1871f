"""What a plan takes from run directories: a server's capacity, a failover's timings.

Read from summary.json (or built from the journals when a run has none, as `maildrill
compare` does); never from the journals directly, so a run measured long ago plans the same.
A `maildrill capacity` directory (capacity.json) gives one `Measured` per server curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.analysis.rundir import RunDirError
from loadtest.analysis.summary_model import Summary
from loadtest.plan.evaluate import Timings
from loadtest.plan.spec import PlanError
from loadtest.scenario import ScenarioError

if TYPE_CHECKING:
    from loadtest.capacity.model import Curve

STEP_LOAD = "max stable rate of its step load"
CURVE = "max stable rate of its capacity curve"
MEAN = "mean accepted rate (no step load: a lower bound, the run may not have pushed it)"


@dataclass(frozen=True)
class Measured:
    server: str
    msgs_per_s: float
    source: str  # where the number comes from, in words, for plan.json and plan.md


def summary_of(run_dir: Path) -> Summary:
    from loadtest.analysis.compare import load_summary

    if not run_dir.is_dir():
        raise PlanError(f"{run_dir}: not a run directory")
    if not (run_dir / "summary.json").exists() and not any(run_dir.glob("attempts*.csv")):
        raise PlanError(f"{run_dir}: no summary.json and no journals here")
    try:
        return load_summary(run_dir)
    except (RunDirError, ScenarioError) as exc:
        raise PlanError(str(exc)) from None


def measured_in(run_dir: Path, server: str | None = None) -> list[Measured]:
    """The capacities a directory measured: each server curve of a `maildrill capacity`
    run (the one of `server` when named; the `all` curve is the servers together, not a
    server), else the one server of a `maildrill run` (`capacity_of`)."""
    from loadtest.capacity import model

    if not (run_dir / model.FILE).exists():
        return [capacity_of(run_dir, server)]
    try:
        report = model.read(run_dir)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    curves = [c for c in report.curves if c.name != "all" and server in (None, c.name)]
    if not curves:
        raise PlanError(f"{run_dir}: no capacity curve of {server or 'a server'} here")
    out = []
    for curve in curves:
        rate = curve.max_stable_msgs_per_s or curve.knee_msgs_per_s
        if curve.ending == "min_rate" or not rate or rate <= 0:
            raise PlanError(f"{run_dir}: the curve of {curve.name} found no stable rate")
        out.append(Measured(curve.name, float(rate), f"{run_dir}: {CURVE}{_bound(curve)}"))
    return out


def _bound(curve: Curve) -> str:
    """What the curve's rate is short of: a knee the search did not close in on, or one the
    load generator rather than the server stopped, is a lower bound, and plan.json says so."""
    if curve.ending == "max_rate":
        return " (a lower bound: stable up to the search's max rate)"
    if curve.ending == "max_steps":
        above = curve.first_unstable_msgs_per_s
        return " (the search ran out of steps" + (f"; unstable at {above:g}" if above else "") + ")"
    if curve.ending == "harness_bound":
        return " (a lower bound: the load generator, not the server, limited the search)"
    if curve.failure == "sender":
        return " (a lower bound: the load generator, not the server, stopped the curve)"
    return ""


def capacity_of(run_dir: Path, server: str | None = None) -> Measured:
    """The rate a run measured: the maximum stable rate of its step load, else its mean
    accepted rate. It is the capacity of the one server that accepted its mail, or of
    `server` when the plan names it (a run whose server stands in for another)."""
    s = summary_of(run_dir)
    accepting = [name for name, t in s.throughput.per_server.items() if t.accepted > 0]
    if server is None:
        if len(accepting) != 1:
            which = ", ".join(accepting) or "none"
            raise PlanError(
                f"{run_dir}: a run measures one server, and here {which} accepted mail: "
                "name the server it measures (capacity.from: {SERVER: RUN_DIR})"
            )
        server = accepting[0]
    rate, how = s.capacity.max_stable_msgs_per_s, STEP_LOAD
    if rate is None:
        rate, how = s.throughput.mean_msgs_per_s, MEAN
    if not rate or rate <= 0:
        raise PlanError(f"{run_dir}: no accepted mail, so no capacity measured")
    return Measured(server, float(rate), f"{run_dir}: {how}")


def timings_of(run_dir: Path) -> tuple[Timings, str]:
    """A failover drill's timings: the worst of its faults for each (a plan should not count
    on the luckiest failover). A timing never measured (the server never failed back
    within the run) counts as 0, and the source says so."""
    s = summary_of(run_dir)
    faults = [f for f in s.failovers if f.measured_from == "attempts"]
    if not faults:
        raise PlanError(f"{run_dir}: no fault in this run: failover timings come from a drill")

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    detection = worst([f.detection_s for f in faults])
    failover = worst([f.failover_s for f in faults])
    failback = worst([f.failback_s for f in faults])
    missing = [n for n, v in (("detection_s", detection), ("failover_s", failover),
                               ("failback_s", failback)) if v is None]  # fmt: skip
    note = f"{run_dir}: worst of {len(faults)} fault{'s' * (len(faults) != 1)}"
    if missing:
        note += f" ({', '.join(missing)} not measured: 0)"
    gap = failover if failover is not None else detection  # failover_s includes detection
    timings = Timings(detection or 0.0, gap or 0.0, failback or 0.0)
    return timings, note
