"""plan.json: the pydantic model of what `maildrill plan` answers (docs/planning.md).

Times are seconds from the campaign's start; rates msgs/s; lateness is from when a message
is due to when the fluid model delivers it. Built from the model's `Answer` by `build`.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from loadtest.plan import fluid
from loadtest.plan.evaluate import Answer, serving_rate
from loadtest.plan.inputs import Sources


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


class LatenessS(_Part):
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class StreamOutcome(_Part):
    share: float
    priority: int
    messages: float
    completion_s: float | None = Field(description="its last message delivered; null: never")
    lateness_s: LatenessS = Field(description="due to delivered, over its messages")
    undelivered: float = Field(description="messages the model never saw delivered")


class ServerOutcome(_Part):
    capacity_msgs_per_s: float
    source: str = Field(description="where the rate comes from")
    carried_at_peak_msgs_per_s: float = Field(description="its share of the peak, all up")
    headroom: float = Field(description="1 - carried / capacity at the peak")


class Piece(_Part):
    from_s: float
    msgs_per_s: float


class OutageOutcome(_Part):
    server: str
    at_s: float
    duration_s: float
    deliverable_msgs_per_s: float = Field(description="by the servers left, once failed over")
    peak_offered_msgs_per_s: float = Field(description="the highest offered rate during it")


class FailoverTimings(_Part):
    detection_s: float
    failover_s: float = Field(description="onset to mail flowing elsewhere: nothing before")
    failback_s: float = Field(description="clear to mail flowing to the server again")
    source: str


class Extra(_Part):
    """What would meet the plan, when it misses."""

    msgs_per_s: float | None = Field(
        description="the least extra rate (pooled, up throughout); null: no rate would"
    )
    servers: dict[str, int] = Field(
        default_factory=dict, description="or this many more servers of each measured kind"
    )
    completion_s: float | None = Field(default=None, description="the completion with it")
    why: str = ""


class Plan(_Part):
    met: bool = Field(description="deadline and headroom both met (exit 0; else 1)")
    deadline_met: bool
    headroom_met: bool
    messages: float
    shape: str
    start: datetime | None = Field(description="the campaign's start, when given")
    window_s: float
    deadline_s: float
    peak_offered_msgs_per_s: float
    peak_offered_at_s: float
    routing: str
    headroom_target: float
    step_s: float = Field(description="the model's time step (grown for very long plans)")
    outage: OutageOutcome | None
    failover: FailoverTimings
    deliverable: list[Piece] = Field(description="the deliverable rate, piece by piece")
    completion_s: float | None = Field(description="the last message delivered; null: never")
    peak_backlog: float = Field(description="messages waiting, at the most")
    peak_backlog_at_s: float
    drained_at_s: float | None = Field(description="backlog back to 0 after its peak")
    servers: dict[str, ServerOutcome]
    streams: dict[str, StreamOutcome]
    extra: Extra | None = Field(description="null when the plan is met")


def _lateness(late: fluid.Lateness | None) -> LatenessS:
    if late is None:
        return LatenessS(p50=0.0, p95=0.0, p99=0.0, max=0.0)
    return LatenessS(p50=_r(late.p50), p95=_r(late.p95), p99=_r(late.p99), max=_r(late.max))


def _outage(a: Answer) -> OutageOutcome | None:
    q, o = a.question, a.question.outage
    if o is None:
        return None
    left = serving_rate(q.servers, set(q.servers) - {o.server}, q.routing) + a.extra_msgs_per_s
    return OutageOutcome(
        server=o.server,
        at_s=o.at_s,
        duration_s=o.duration_s,
        deliverable_msgs_per_s=round(left, 3),
        peak_offered_msgs_per_s=round(q.offered.max_rate(o.at_s, o.at_s + o.duration_s), 3),
    )


def build(a: Answer, sources: Sources, shape: str, extra: Extra | None) -> Plan:
    q = a.question
    total = q.offered.total
    streams = {}
    for g in q.groups:
        late = a.lateness[g.priority]
        for name, share in g.streams:
            streams[name] = StreamOutcome(
                share=share,
                priority=g.priority,
                messages=round(total * share, 3),
                completion_s=_r(a.group_completion_s[g.priority]),
                lateness_s=_lateness(late),
                undelivered=round((late.undelivered if late else 0.0) * share / g.share, 3),
            )
    servers = {
        name: ServerOutcome(
            capacity_msgs_per_s=round(load.capacity_msgs_per_s, 3),
            source=sources.capacity.get(name, ""),
            carried_at_peak_msgs_per_s=round(load.carried_msgs_per_s, 3),
            headroom=round(load.headroom, 4),
        )
        for name, load in a.loads.items()
    }
    return Plan(
        met=a.met,
        deadline_met=a.deadline_met,
        headroom_met=a.headroom_met,
        messages=round(total, 3),
        shape=sources.shape or shape,
        start=sources.start,
        window_s=round(q.offered.end_s, 3),
        deadline_s=round(q.deadline_s, 3),
        peak_offered_msgs_per_s=round(q.offered.peak_msgs_per_s, 3),
        peak_offered_at_s=round(q.offered.peak_at_s(), 3),
        routing=q.routing,
        headroom_target=q.headroom,
        step_s=a.flow.step_s,
        outage=_outage(a),
        failover=FailoverTimings(
            detection_s=q.timings.detection_s,
            failover_s=q.timings.failover_s,
            failback_s=q.timings.failback_s,
            source=sources.failover,
        ),
        deliverable=[
            Piece(from_s=round(s, 3), msgs_per_s=round(r, 3))
            for s, r in zip(a.supply.starts, a.supply.rates, strict=True)
        ],
        completion_s=_r(a.completion_s),
        peak_backlog=round(a.peak_backlog, 1),
        peak_backlog_at_s=round(a.peak_backlog_at_s, 3),
        drained_at_s=_r(a.drained_at_s),
        servers=servers,
        streams=streams,
        extra=extra,
    )
