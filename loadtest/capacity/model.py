"""capacity.json: what `maildrill capacity` measured, one curve per server and one for all.

Each curve's `knee_msgs_per_s` and `max_stable_msgs_per_s` mean what summary.json's
`capacity` part means by them (docs/metrics.md): the highest offered rate of a stable
step, and the highest delivered rate of a step within the p95 bound. A reader that wants
one server's figures takes the curve named after it (`CapacityReport.curve(name)`); the
curve `all` is the servers together, routed as the scenario routes them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from loadtest.capacity.search import Ending
from loadtest.capacity.stability import Failure

ALL = "all"  # the curve of every server together, as the scenario routes them


class CurveStep(BaseModel):
    """One step: `rate` msgs/s offered for the step's duration, through `maildrill run`."""

    rate: float = Field(description="offered msgs/s (nominal)")
    offered_msgs_per_s: float = Field(description="first attempts intended in the step, per s")
    accepted_msgs_per_s: float = Field(description="offered in the step, accepted on time, per s")
    delivered_msgs_per_s: float = Field(
        description="accepted attempts ended in the step's last 3/4, per s"
    )
    backlog_growth_msgs_per_s: float = Field(description="slope of offered minus accepted")
    p95_latency_ms: float | None = Field(description="accepted attempts ended in the step")
    p95_response_ms: float | None = Field(description="accepted minus intended")
    attempts: int = Field(description="attempts ended in the step")
    refused_share: float
    timeout_share: float
    throttled_share: float = Field(description="4xx replies")
    rejected_share: float = Field(description="5xx replies")
    dropped_share: float
    busy_connections: float | None = Field(description="mean SMTP transactions in progress")
    connections: int | None = Field(description="the sender's concurrent connections (users)")
    sender_cpu: float | None = Field(
        default=None, description="the busiest sender process on a CPU, share of one core"
    )
    sender_wait: float | None = Field(
        default=None, description="the same process runnable but waiting for a CPU"
    )
    sink_cpu: float | None = Field(default=None, description="the busiest local sink process")
    sink_wait: float | None = Field(default=None, description="the same, waiting for a CPU")
    machine_busy: float | None = Field(default=None, description="share of all cores busy")
    harness_bound: str | None = Field(
        default=None, description="why the load generator, not the server, limited the step"
    )
    stable: bool
    failure: Failure | None = Field(description="how an unstable step failed")
    why: str = Field(description="which stability test failed, in words")
    run_dir: str = Field(description="the step's own run directory, relative to this one")


class Curve(BaseModel):
    name: str = Field(description="a server's name, or `all`")
    servers: list[str] = Field(description="the servers the load was routed to")
    knee_msgs_per_s: float | None = Field(description="the highest stable offered rate")
    first_unstable_msgs_per_s: float | None = Field(description="the lowest unstable one above")
    max_stable_msgs_per_s: float | None = Field(
        description="the highest delivered rate of a step within the p95 bound"
    )
    failure: Failure | None = Field(description="how the first unstable step past the knee failed")
    ending: Ending = Field(description="converged, max_rate, min_rate, max_steps or harness_bound")
    harness_bound_msgs_per_s: float | None = Field(
        default=None,
        description="the lowest rate the harness could not offer (the knee is at least "
        "knee_msgs_per_s, and unmeasured above this)",
    )
    steps: list[CurveStep] = Field(default_factory=list, description="in the order run")


class SearchSettingsModel(BaseModel):
    start_rate: float
    factor: float
    precision: float
    max_rate: float
    min_rate: float
    max_steps: int
    confirm: bool = Field(default=True, description="an unstable refining step run twice")
    step_s: float = Field(description="each step's duration")


class RuleModel(BaseModel):
    min_accepted_share: float
    max_backlog_growth: float = Field(description="of the offered rate, per second")
    p95_limit_ms: float | None
    error_share: float
    idle_share: float
    on_time_s: float


class CapacityReport(BaseModel):
    scenario: str
    started_at: float
    finished_at: float | None = None
    partial: bool = Field(default=False, description="interrupted: some curves unfinished")
    settings: SearchSettingsModel
    rule: RuleModel
    curves: list[Curve] = Field(default_factory=list)

    def curve(self, name: str) -> Curve | None:
        return next((c for c in self.curves if c.name == name), None)


FILE = "capacity.json"


def read(run_dir: Path) -> CapacityReport:
    """A capacity run directory's capacity.json; ValueError (one line) when it is missing
    or damaged."""
    path = run_dir / FILE
    try:
        return CapacityReport.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None
