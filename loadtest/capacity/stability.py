"""Is one step of constant offered load stable, and if not, how did it fail?

A step is STABLE when, over its window, all three hold:

1. accepted >= `min_accepted_share` (95 %) of offered: the messages offered in the step
   that were accepted on time (within the step's on-time budget of their intended send
   time, see `loadtest.analysis.capacity.on_time_s`), per second, over the offered rate;
2. no growing backlog: the backlog (messages offered in the step and not yet accepted)
   grows by at most `max_backlog_growth` (2 %) of the offered rate per second. This is the
   sharp test: a server with capacity C offered r > C leaves (r - C) more messages waiting
   every second, so r is unstable as soon as r > C / (1 - 0.02); the on-time rule alone
   would let a short step hide a backlog under its one-second budget;
3. p95 latency within the bound (the scenario's `p95_latency_ms` SLO), when there is one.

The failure mode of an unstable step is the first that applies, in this order: refused
connections, timeouts, 4xx throttling, 5xx rejections, dropped connections (each when
they are at least `error_share` (1 %) of the step's attempts), p95 latency over the bound,
then `saturated` (no errors: the servers took mail as fast as they could and the rest
waited), or `sender` when the backlog grew while the connections were mostly idle: the
load generator itself could not offer the rate, so that step measured the harness, not
the servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Failure(StrEnum):
    REFUSED = "refused"  # TCP connections refused
    TIMEOUTS = "timeouts"
    THROTTLED = "throttled"  # 4xx replies
    REJECTED = "rejected"  # 5xx replies
    DROPPED = "dropped"  # connections closed or reset by the server
    LATENCY = "latency"  # p95 latency over the bound
    SATURATED = "saturated"  # no errors, the backlog grew: the servers' own limit
    SENDER = "sender"  # the backlog grew with idle connections: the harness's limit


@dataclass(frozen=True)
class StepFigures:
    """What one finished step measured (docs/metrics.md, "Capacity curves")."""

    rate: float  # offered, nominal msgs/s
    offered_msgs_per_s: float  # first attempts intended in the window, per second
    accepted_msgs_per_s: float  # offered in the window, accepted on time, per second
    delivered_msgs_per_s: float  # accepted attempts ended in the window, per second
    backlog_growth_msgs_per_s: float  # slope of (offered - accepted) over the window
    p95_latency_ms: float | None  # of the accepted attempts ended in the window
    p95_response_ms: float | None  # accepted - intended, messages offered in the window
    attempts: int = 0  # attempts ended in the window
    refused_share: float = 0.0  # of those attempts
    timeout_share: float = 0.0
    throttled_share: float = 0.0  # 4xx
    rejected_share: float = 0.0  # 5xx
    dropped_share: float = 0.0
    busy_connections: float | None = None  # mean connections in use (delivered x latency)
    connections: int | None = None  # connections the sender may open (Locust users)
    # The harness over the step's steady part (loadtest.capacity.harness): the busiest
    # sender and local sink process, in shares of one core, and the machine's busy share.
    sender_cpu: float | None = None  # on a CPU
    sender_wait: float | None = None  # runnable, waiting for a CPU
    sink_cpu: float | None = None
    sink_wait: float | None = None
    machine_busy: float | None = None  # of all cores
    harness_bound: str | None = None  # why the harness, not the server, limited the step


@dataclass(frozen=True)
class StabilityRule:
    min_accepted_share: float = 0.95
    max_backlog_growth: float = 0.02  # of the offered rate, per second
    p95_limit_ms: float | None = None
    error_share: float = 0.01  # an error class this common names the failure
    idle_share: float = 0.8  # backlog with connections busy less than this: the sender


@dataclass(frozen=True)
class Verdict:
    stable: bool
    failure: Failure | None  # None when stable
    why: str  # one line for the report


def judge(f: StepFigures, rule: StabilityRule) -> Verdict:
    accepted_share = f.accepted_msgs_per_s / f.rate if f.rate > 0 else 1.0
    growth_share = f.backlog_growth_msgs_per_s / f.rate if f.rate > 0 else 0.0
    slow = (
        rule.p95_limit_ms is not None
        and f.p95_latency_ms is not None
        and f.p95_latency_ms > rule.p95_limit_ms
    )
    problems = []
    if accepted_share < rule.min_accepted_share:
        problems.append(f"accepted {accepted_share:.1%} of offered")
    if growth_share > rule.max_backlog_growth:
        problems.append(f"backlog grew {f.backlog_growth_msgs_per_s:.1f} msgs/s")
    if slow:
        problems.append(f"p95 latency {f.p95_latency_ms:g} ms over {rule.p95_limit_ms:g}")
    if not problems:
        return Verdict(True, None, "stable")
    return Verdict(False, failure_mode(f, rule, slow), "; ".join(problems))


def failure_mode(f: StepFigures, rule: StabilityRule, slow: bool) -> Failure:
    by_class = (
        (Failure.REFUSED, f.refused_share),
        (Failure.TIMEOUTS, f.timeout_share),
        (Failure.THROTTLED, f.throttled_share),
        (Failure.REJECTED, f.rejected_share),
        (Failure.DROPPED, f.dropped_share),
    )
    for failure, share in by_class:
        if share >= rule.error_share:
            return failure
    if slow:
        return Failure.LATENCY
    if (
        f.busy_connections is not None
        and f.connections
        and f.busy_connections < rule.idle_share * f.connections
    ):
        return Failure.SENDER
    return Failure.SATURATED
