"""A plan spec made into the model's `Question`: shapes into offered-rate segments, run
directories into rates and timings, moments into seconds from the campaign's start.

The only module of the plan that reads files (run directories, a scenario); what it read
and from where is kept in `Sources`, so plan.json says what each number stands on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from loadtest.plan import fluid
from loadtest.plan.evaluate import Outage, Question, StreamGroup, Timings
from loadtest.plan.measured import measured_in, timings_of
from loadtest.plan.spec import (
    MAX_PLAN_S,
    CampaignPlan,
    Moment,
    PlanError,
    PlanSpec,
    as_utc,
    duration_s,
)
from loadtest.scenario import ScenarioError


@dataclass
class Sources:
    """Where each input came from, in words."""

    capacity: dict[str, str] = field(default_factory=dict)
    failover: str = "none given: 0 s"
    shape: str = ""
    start: datetime | None = None


@dataclass(frozen=True)
class Shaped:
    offered: fluid.Offered
    window_s: float
    streams: tuple[tuple[str, float, int], ...]  # name, share, priority


def _scaled(
    stages: list[tuple[float, float, float]], messages: float, window_s: float
) -> list[fluid.Segment]:
    """Stages (duration, rate, final rate) stretched to the window and scaled to the count."""
    length = sum(d for d, _, _ in stages)
    total = sum((r + f) * d / 2.0 for d, r, f in stages)
    if total <= 0:
        raise PlanError("the campaign's shape offers no messages")
    stretch, scale = window_s / length, messages / total * length / window_s
    segments, t = [], 0.0
    for d, r, f in stages:
        segments.append(fluid.Segment(t, d * stretch, r * scale, f * scale))
        t += d * stretch
    return segments


def window_of(c: CampaignPlan) -> float | None:
    if c.window_h is not None:
        return c.window_h * 3600.0
    if c.start is not None and c.end is not None:
        return (as_utc(c.end) - as_utc(c.start)).total_seconds()
    return None


def shaped(c: CampaignPlan, sources: Sources) -> Shaped:
    window = window_of(c)
    streams = tuple((s.name, s.share, s.priority) for s in c.streams)
    if c.shape == "schedule":
        assert c.scenario is not None  # the spec's rule
        from loadtest.bundled import scenario_path
        from loadtest.scenario import load_scenario

        try:
            scenario = load_scenario(scenario_path(c.scenario))
        except ScenarioError as exc:
            raise PlanError(str(exc)) from None
        schedule = scenario.campaign.build_schedule()
        stages = [(s.duration_s, s.rate, s.final_rate) for s in schedule.stages]
        window = window or schedule.duration_s
        messages = float(c.messages if c.messages is not None else schedule.total)
        if not streams:
            weights = sum(s.weight for s in scenario.campaign.streams)
            streams = tuple((s.name, s.weight / weights, s.priority)
                            for s in scenario.campaign.streams)  # fmt: skip
        sources.shape = f"the schedule of {scenario.name}, scaled to the window and messages"
    else:
        assert window is not None  # the spec's rules
        assert c.messages is not None
        messages = float(c.messages)
        if c.shape == "flat":
            stages = [(window, 1.0, 1.0)]
        else:
            up = c.peak_at * window
            stages = [(up, 0.0, 1.0)] + ([(window - up, 1.0, 0.0)] if window > up else [])
        sources.shape = c.shape
    segments = _scaled(stages, messages, window)
    return Shaped(fluid.Offered(tuple(segments)), window, streams or (("all", 1.0, 0),))


def seconds(moment: Moment, start: datetime | None, what: str) -> float:
    """A moment as seconds from the campaign's start."""
    if isinstance(moment, str) and "T" in moment:  # quoted in YAML, or from a flag
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise PlanError(f"{what}: {moment!r} is not an ISO 8601 date-time") from None
    if isinstance(moment, datetime):
        if start is None:
            raise PlanError(f"{what}: a date-time needs campaign.start")
        after = (as_utc(moment) - as_utc(start)).total_seconds()
        if after < 0:
            raise PlanError(f"{what}: {moment.isoformat()} is before campaign.start")
        moment = after
    return duration_s(moment, what, MAX_PLAN_S)


def capacities(spec: PlanSpec, sources: Sources) -> dict[str, float]:
    rates: dict[str, float] = {}
    named = spec.capacity.from_
    pairs = list(named.items()) if isinstance(named, dict) else [(None, p) for p in named]
    for name, run_dir in pairs:
        for m in measured_in(Path(run_dir), name):
            if m.server in rates:
                raise PlanError(f"capacity.from: {m.server} is measured twice ({run_dir})")
            rates[m.server], sources.capacity[m.server] = m.msgs_per_s, m.source
    for name, rate in spec.capacity.servers.items():
        if name in rates:
            raise PlanError(f"capacity.servers: {name} is also measured (capacity.from)")
        rates[name], sources.capacity[name] = rate, "given by hand"
    return _ordered(spec, rates)


def _ordered(spec: PlanSpec, rates: dict[str, float]) -> dict[str, float]:
    """The servers in the order that decides who delivers under failover: `order`, else
    the one list they were given in. Measured and given by hand, they come from two lists,
    and which delivers first is the user's to say, not the merge's."""
    order = spec.capacity.order
    if not order:
        mixed = bool(spec.capacity.from_) and bool(spec.capacity.servers)
        if spec.capacity.routing == "failover" and mixed:
            raise PlanError(
                "capacity.order: under failover, with servers both measured (from) and given "
                f"by hand (servers), name the order, the one that delivers first: {list(rates)}"
            )
        return rates
    if sorted(order) != sorted(rates):
        raise PlanError(f"capacity.order: {order} must name each server once: {sorted(rates)}")
    return {name: rates[name] for name in order}


def timings(spec: PlanSpec, sources: Sources) -> Timings:
    f = spec.failover
    measured, note = Timings(), "none given: 0 s"
    if f.from_ is not None:
        measured, note = timings_of(Path(f.from_))
    given = {k: v for k, v in (("detection_s", f.detection_s), ("failover_s", f.failover_s),
                               ("failback_s", f.failback_s)) if v is not None}  # fmt: skip
    if given:
        note = (note + "; " if f.from_ is not None else "") + "by hand: " + ", ".join(given)
    sources.failover = note
    detection = given.get("detection_s", measured.detection_s)
    gap = given.get("failover_s", max(measured.failover_s, detection))
    if gap < detection:
        raise PlanError(f"failover.failover_s ({gap:g}) counts from the onset: >= detection_s")
    return Timings(detection, gap, given.get("failback_s", measured.failback_s))


def question(spec: PlanSpec) -> tuple[Question, Sources]:
    c = spec.campaign
    sources = Sources(start=c.start and as_utc(c.start))
    shape = shaped(c, sources)
    servers = capacities(spec, sources)
    outage = None
    if spec.outage is not None:
        o = spec.outage
        if o.server not in servers:
            raise PlanError(f"outage.server: {o.server} has no capacity ({', '.join(servers)})")
        at = (shape.offered.peak_at_s() if o.at == "peak"
              else seconds(o.at, sources.start, "outage.at"))  # fmt: skip
        outage = Outage(o.server, at, duration_s(o.duration, "outage.duration"))
    if spec.step_s > shape.window_s / 10:
        raise PlanError(
            f"step_s: {spec.step_s:g} s is too coarse for a {shape.window_s:g} s window "
            "(at most a tenth of it)"
        )
    deadline = (shape.window_s if spec.deadline is None
                else seconds(spec.deadline, sources.start, "deadline"))  # fmt: skip
    by_priority: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for name, share, priority in shape.streams:
        by_priority[priority].append((name, share))
    groups = tuple(StreamGroup(p, tuple(v)) for p, v in sorted(by_priority.items(), reverse=True))
    q = Question(
        offered=shape.offered,
        groups=groups,
        servers=servers,
        routing=spec.capacity.routing,
        outage=outage,
        timings=timings(spec, sources),
        headroom=spec.headroom,
        deadline_s=deadline,
        step_s=spec.step_s,
    )
    return q, sources
