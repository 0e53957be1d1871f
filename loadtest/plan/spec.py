"""plan.yaml: the campaign, the capacity, the failover timings, the outage and the goals.

Strict like a scenario (unknown keys, non-finite and huge numbers are errors) and read the
same way, so bad input is one line. Times are seconds, or a duration written "90s", "30m",
"1.5h", "1h30m"; with `campaign.start`, a moment may also be a date-time (ISO 8601, UTC
unless it says). The keys are documented in docs/planning.md; `loadtest.plan.inputs` turns
a spec into the model's `Question`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from loadtest.overrides import OverrideError, apply_set
from loadtest.scenario import ScenarioError, read_yaml
from loadtest.strict_model import StrictModel
from maildrill.inputs import describe_errors
from maildrill.numbers import MAX_DURATION_S


class PlanError(ValueError):
    """A plan that cannot be computed; the message is one line meant for the user."""


_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}

Moment = float | str | datetime


# The longest campaign a plan takes, and so the latest moment in it: a month (a longer
# send is several campaigns, and its hourly shape is no longer one schedule).
MAX_PLAN_S = 31 * 86400.0


def duration_s(value: float | str, what: str, limit: float = MAX_DURATION_S) -> float:
    """Seconds from a number or a string like "1h30m", "90s", "2.5h", at most `limit`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise PlanError(
                f"{what}: {value!r} is not a duration (seconds, or e.g. 90s, 30m, 1h30m)"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 <= seconds <= limit:
        raise PlanError(f"{what}: {seconds:g} s is out of range (0 to {limit:g} s, {_span(limit)})")
    return seconds


def _span(seconds: float) -> str:
    return "a week" if seconds == 7 * 86400 else f"{seconds / 86400:g} days"


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class StreamShare(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0, le=1, description="its share of the campaign's messages")
    priority: int = Field(
        default=0, ge=-1000, le=1000, description="higher is served first when mail waits"
    )


class CampaignPlan(StrictModel):
    messages: int | None = Field(
        default=None, gt=0, description="messages in the campaign (schedule: the scenario's)"
    )
    window_h: float | None = Field(
        default=None, gt=0, le=MAX_PLAN_S / 3600, description="its length in hours"
    )
    start: datetime | None = Field(
        default=None, description="when it starts (ISO 8601): moments may then be date-times"
    )
    end: datetime | None = Field(default=None, description="when it ends (or window_h)")
    shape: Literal["flat", "ramp", "schedule"] = "flat"
    peak_at: float = Field(
        default=0.5, gt=0, le=1, description="ramp: where the peak falls, a share of the window"
    )
    scenario: str | None = Field(
        default=None, description="schedule: the scenario (file or bundled name) it follows"
    )
    streams: list[StreamShare] = Field(default_factory=list)

    @model_validator(mode="after")
    def _coherent(self) -> CampaignPlan:
        if self.shape == "schedule" and not self.scenario:
            raise ValueError("shape schedule needs scenario: whose schedule it follows")
        if self.shape != "schedule" and self.scenario:
            raise ValueError("scenario goes with shape: schedule")
        if self.shape != "schedule" and self.messages is None:
            raise ValueError("messages is required (only shape: schedule takes the scenario's)")
        if self.window_h is not None and self.end is not None:
            raise ValueError("give window_h or end, not both")
        if self.end is not None and self.start is None:
            raise ValueError("end goes with start")
        if self.start and self.end and as_utc(self.end) <= as_utc(self.start):
            raise ValueError("end must be after start")
        if (
            self.start
            and self.end
            and (as_utc(self.end) - as_utc(self.start)).total_seconds() > MAX_PLAN_S
        ):
            raise ValueError(f"from start to end is over {MAX_PLAN_S / 86400:g} days")
        if self.shape != "schedule" and self.window_h is None and self.end is None:
            raise ValueError("give the window: window_h, or start and end")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError("streams: names must be unique")
        if self.streams and abs(sum(s.share for s in self.streams) - 1.0) > 1e-6:
            raise ValueError("streams: the shares must add up to 1")
        return self


class CapacityPlan(StrictModel):
    from_: list[Path] | dict[str, Path] = Field(
        default_factory=list,
        alias="from",
        description="run directories: a list (each measures the one server that accepted its "
        "mail) or {server: run directory}",
    )
    servers: dict[str, float] = Field(
        default_factory=dict, description="msgs/s per server, given by hand"
    )
    routing: Literal["pool", "failover"] = Field(
        default="pool",
        description="pool: every server up delivers; failover: the first up alone, the "
        "others stand by (the order given)",
    )
    order: list[str] = Field(
        default_factory=list,
        description="failover: the servers, first the one that delivers (needed when some "
        "are measured and some given by hand: two lists have no one order)",
    )

    @field_validator("servers")
    @classmethod
    def _positive(cls, servers: dict[str, float]) -> dict[str, float]:
        for name, rate in servers.items():
            if rate <= 0:
                raise ValueError(f"{name}: a rate must be > 0 msgs/s")
        return servers

    @model_validator(mode="after")
    def _some(self) -> CapacityPlan:
        if not self.from_ and not self.servers:
            raise ValueError("give from (run directories) or servers (msgs/s by hand)")
        return self


class FailoverPlan(StrictModel):
    from_: Path | None = Field(default=None, alias="from", description="a failover drill's run")
    detection_s: float | None = Field(default=None, ge=0, le=MAX_DURATION_S)
    failover_s: float | None = Field(default=None, ge=0, le=MAX_DURATION_S)
    failback_s: float | None = Field(default=None, ge=0, le=MAX_DURATION_S)


class OutagePlan(StrictModel):
    server: str
    at: Moment = Field(description='"peak", a time from the start, or a date-time')
    duration: float | str = Field(description="how long the server is gone")


class PlanSpec(StrictModel):
    campaign: CampaignPlan
    capacity: CapacityPlan
    failover: FailoverPlan = Field(default_factory=FailoverPlan)
    outage: OutagePlan | None = None
    headroom: float = Field(
        default=0.2, ge=0, lt=1, description="capacity left free at the peak, each server"
    )
    deadline: Moment | None = Field(
        default=None, description="everything delivered by then (default: the window's end)"
    )
    step_s: float = Field(default=1.0, gt=0, le=3600, description="the model's time step")


def parse_plan(data: Any, source: str) -> PlanSpec:
    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a mapping at the top")
    try:
        return PlanSpec.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{source}: {describe_errors(exc)}") from None


def load_plan(path: Path | None, sets: list[str]) -> PlanSpec:
    """plan.yaml (or nothing: every key by `--set`), with `--set key=value` applied."""
    if path is None and not sets:
        raise PlanError("give a PLAN.yaml, or its keys by --set (docs/planning.md)")
    data: Any = {}
    if path is not None:
        try:
            data = read_yaml(path)
        except ScenarioError as exc:
            raise PlanError(str(exc)) from None
        if data is None:
            data = {}
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping at the top")
    try:
        for assignment in sets:
            apply_set(data, assignment)
    except OverrideError as exc:
        raise PlanError(str(exc)) from None
    return parse_plan(data, str(path) if path else "--set")
