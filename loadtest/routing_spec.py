"""A scenario's `routing:` section: which server a message tries, when it retries, how long
each SMTP stage may take; and the routing Policy it builds for the senders.

The defaults are the runtime types' own (Breakers, RetryPolicy, Timeouts): one place each.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from loadtest.client import Timeouts
from loadtest.dns_cache import by_preference
from loadtest.limits import MAX_ATTEMPTS
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, ByStream, Failover, Policy, Weighted
from loadtest.server_spec import ServerSpec
from loadtest.strict_model import StrictModel
from maildrill.numbers import Seconds, at_most

# The defaults of the routing sections are the runtime types' own (one place for each).
_BREAKERS, _RETRY, _TIMEOUTS = Breakers(), RetryPolicy(), Timeouts()


class CircuitSpec(StrictModel):
    threshold: int = Field(
        default=_BREAKERS.threshold, ge=1, description="consecutive server failures that open it"
    )
    cooldown_s: Seconds = Field(
        default=_BREAKERS.cooldown_s, gt=0, description="open this long, then one probe"
    )


class RetrySpec(StrictModel):
    """loadtest.retry.RetryPolicy's settings."""

    max_attempts: Annotated[int, at_most(MAX_ATTEMPTS, "attempts")] = Field(
        default=_RETRY.max_attempts, ge=1, description="per message, all servers"
    )
    backoff_s: Seconds = Field(default=_RETRY.backoff_s, ge=0, description="first wait after a 4xx")
    backoff_factor: float = Field(
        default=_RETRY.backoff_factor, ge=1, description="each wait this much longer"
    )
    max_backoff_s: Seconds = Field(default=_RETRY.max_backoff_s, ge=0, description="longest wait")
    retry_after_dot: bool = Field(
        default=_RETRY.retry_after_dot,
        description="retry timeouts/drops after the dot (may duplicate)",
    )
    defer_to_next: bool = Field(
        default=_RETRY.defer_to_next, description="retry a message 4xx on the next server"
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(**self.model_dump())


class TimeoutSpec(StrictModel):
    """loadtest.client.Timeouts, in seconds."""

    connect: Seconds = Field(default=_TIMEOUTS.connect, gt=0)
    greeting: Seconds = Field(default=_TIMEOUTS.greeting, gt=0)
    command: Seconds = Field(default=_TIMEOUTS.command, gt=0)
    data: Seconds = Field(default=_TIMEOUTS.data, gt=0)
    dot: Seconds = Field(default=_TIMEOUTS.dot, gt=0)

    def timeouts(self) -> Timeouts:
        return Timeouts(**self.model_dump())


class StreamRoute(StrictModel):
    policy: Literal["failover", "weighted"] = Field(
        default="failover", description="for this stream"
    )
    servers: list[str] = Field(min_length=1, description="in order of preference")


class RoutingSpec(StrictModel):
    policy: Literal["failover", "weighted", "by-stream"] = Field(
        default="failover", description="how a server is chosen"
    )
    servers: list[str] | None = Field(default=None, description="default: all, by priority")
    streams: dict[str, StreamRoute] = Field(default_factory=dict, description="by-stream routes")
    circuit: CircuitSpec = Field(default_factory=CircuitSpec, description="breaker per server")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="when messages are retried")
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec, description="per SMTP stage")

    def ordered_servers(self, servers: Sequence[ServerSpec]) -> list[str]:
        """The servers as listed here, or else all of them by priority (MX preference)."""
        return self.servers or [s.name for s in sorted(servers, key=lambda s: s.priority)]

    def build_policy(self, servers: Sequence[ServerSpec], seed: str | None = None) -> Policy:
        """The senders' routing state machine over these servers (the scenario's). With a
        `seed` (one per sending process), MX hosts (`mx:` servers) of equal preference are
        in a shuffled order, as an MTA randomises them; other ties in the scenario's."""
        breakers = Breakers(self.circuit.threshold, self.circuit.cooldown_s)
        weights = {s.name: s.weight for s in servers}
        priorities = {s.name: s.priority for s in servers}
        mx_hosts = {s.name for s in servers if s.mx is not None}  # shuffled when tied

        def make(kind: str, names: list[str]) -> Policy:
            if kind == "weighted":
                return Weighted({n: weights[n] for n in names}, breakers)
            if self.servers is not None:
                return Failover(names, breakers)
            if seed is None or not mx_hosts:
                return Failover(sorted(names, key=lambda n: priorities[n]), breakers)
            rng = random.Random(seed)
            return Failover(by_preference(names, priorities, rng, mx_hosts), breakers)

        if self.policy == "by-stream":
            routes = {k: make(v.policy, v.servers) for k, v in self.streams.items()}
            return ByStream(routes, breakers)
        return make(self.policy, self.ordered_servers(servers))
