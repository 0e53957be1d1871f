"""Which server gets the next attempt: pure state machines over outcomes, no I/O.

A policy answers `choose(stream, now)` with a server name (or None when every circuit is
open) and learns from `report(server, result, now)`. Circuits follow the usual breaker:
closed -> open (after K consecutive server failures, at once for refused/hang) -> half-open
after a cool-down (one probe attempt) -> closed on success, open again on failure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from loadtest.outcomes import SERVER_PHASES, Outcome, Phase


@dataclass(frozen=True, slots=True)
class Result:
    """What routing needs to know about one finished attempt."""

    outcome: Outcome
    phase: Phase
    code: int = 0

    @property
    def server_failure(self) -> bool:
        """A failure that says the server is unwell (not the message or recipient)."""
        if self.outcome in (Outcome.REFUSED, Outcome.TIMEOUT, Outcome.DROPPED):
            return True
        if self.outcome is Outcome.DEFERRED:
            return self.code == 421 or self.phase in SERVER_PHASES
        return False

    @property
    def opens_at_once(self) -> bool:
        """Refused, or a hang before the banner: no point trying K times."""
        if self.outcome is Outcome.REFUSED:
            return True
        return self.outcome is Outcome.TIMEOUT and self.phase in (Phase.CONNECT, Phase.GREETING)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Circuit:
    threshold: int = 3  # consecutive server failures that open it
    cooldown_s: float = 2.0  # open this long before a half-open probe
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False  # a half-open probe is in flight

    def allows(self, now: float) -> bool:
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.cooldown_s:
            self.state = CircuitState.HALF_OPEN
            self.probing = False
        return self.state is CircuitState.HALF_OPEN and not self.probing

    def begin(self) -> None:
        """An attempt is starting on this server (the half-open probe, if half-open)."""
        if self.state is CircuitState.HALF_OPEN:
            self.probing = True

    def record(self, result: Result, now: float) -> None:
        if result.phase is Phase.DNS and not result.server_failure:
            return  # the resolver failed, not the server: nothing learnt of its health
        if result.server_failure:
            self.failures += 1
            if (
                self.state is CircuitState.HALF_OPEN
                or result.opens_at_once
                or self.failures >= self.threshold
            ):
                self.state = CircuitState.OPEN
                self.opened_at = now
                self.probing = False
            return
        # Anything else means the server answered like a server: it is healthy.
        self.failures = 0
        self.state = CircuitState.CLOSED
        self.probing = False


class Policy(Protocol):
    def choose(self, stream: str, now: float, exclude: frozenset[str] = ...) -> str | None: ...

    def report(self, server: str, result: Result, now: float) -> None: ...

    def states(self) -> dict[str, CircuitState]: ...

    def preferred(self, stream: str) -> str:
        """The server `stream` uses when every server is healthy (to flag failovers)."""
        ...


@dataclass
class Breakers:
    """One circuit per server, shared by the policies that route over them."""

    threshold: int = 3
    cooldown_s: float = 2.0
    circuits: dict[str, Circuit] = field(default_factory=dict)

    def __getitem__(self, server: str) -> Circuit:
        circuit = self.circuits.get(server)
        if circuit is None:
            circuit = self.circuits[server] = Circuit(self.threshold, self.cooldown_s)
        return circuit

    def report(self, server: str, result: Result, now: float) -> None:
        self[server].record(result, now)

    def states(self) -> dict[str, CircuitState]:
        return {name: c.state for name, c in self.circuits.items()}


class Failover:
    """Servers in priority order, like MX preferences: the first healthy one gets the mail.

    When the preferred server's circuit goes half-open it gets one probe; success closes the
    circuit and traffic fails back to it.
    """

    def __init__(self, servers: Sequence[str], breakers: Breakers) -> None:
        if not servers:
            raise ValueError("failover needs at least one server")
        self.servers = list(servers)
        self.breakers = breakers
        for name in self.servers:
            breakers[name]

    def choose(self, stream: str, now: float, exclude: frozenset[str] = frozenset()) -> str | None:
        for name in self.servers:
            if name in exclude:
                continue
            circuit = self.breakers[name]
            if circuit.allows(now):
                circuit.begin()
                return name
        return None

    def report(self, server: str, result: Result, now: float) -> None:
        self.breakers.report(server, result, now)

    def states(self) -> dict[str, CircuitState]:
        return {s: self.breakers[s].state for s in self.servers}

    def preferred(self, stream: str) -> str:
        return self.servers[0]


class Weighted:
    """Smooth weighted round robin (as nginx does it) among servers whose circuit allows."""

    def __init__(self, weights: Mapping[str, int], breakers: Breakers) -> None:
        if not weights or any(w <= 0 for w in weights.values()):
            raise ValueError("weighted needs servers with positive weights")
        self.weights = dict(weights)
        self.current = {name: 0 for name in weights}
        self.breakers = breakers
        for name in self.weights:
            breakers[name]

    def choose(self, stream: str, now: float, exclude: frozenset[str] = frozenset()) -> str | None:
        # A half-open server gets its single probe first, then rejoins the rotation.
        for name in self.weights:
            circuit = self.breakers[name]
            closed = circuit.state is CircuitState.CLOSED
            if name not in exclude and not closed and circuit.allows(now):
                circuit.begin()
                return name
        healthy = [
            n
            for n in self.weights
            if n not in exclude and self.breakers[n].state is CircuitState.CLOSED
        ]
        if not healthy:
            return None
        total = sum(self.weights[n] for n in healthy)
        for name in healthy:
            self.current[name] += self.weights[name]
        best = max(healthy, key=lambda n: self.current[n])
        self.current[best] -= total
        return best

    def report(self, server: str, result: Result, now: float) -> None:
        self.breakers.report(server, result, now)

    def states(self) -> dict[str, CircuitState]:
        return {s: self.breakers[s].state for s in self.weights}

    def preferred(self, stream: str) -> str:
        return max(self.weights, key=lambda n: self.weights[n])


class ByStream:
    """Each stream (transactional, promotional, ...) routed by its own policy.

    All the policies share one `Breakers`, so what one stream learns about a server the
    others know at once.
    """

    def __init__(
        self, policies: Mapping[str, Policy], breakers: Breakers, default: str | None = None
    ) -> None:
        if not policies:
            raise ValueError("by-stream needs at least one stream")
        self.policies = dict(policies)
        self.breakers = breakers
        self.default = default or next(iter(self.policies))
        if self.default not in self.policies:
            raise ValueError(f"default stream {self.default!r} has no policy")

    def _policy(self, stream: str) -> Policy:
        return self.policies.get(stream) or self.policies[self.default]

    def choose(self, stream: str, now: float, exclude: frozenset[str] = frozenset()) -> str | None:
        return self._policy(stream).choose(stream, now, exclude)

    def preferred(self, stream: str) -> str:
        return self._policy(stream).preferred(stream)

    def report(self, server: str, result: Result, now: float) -> None:
        self.breakers.report(server, result, now)

    def states(self) -> dict[str, CircuitState]:
        return self.breakers.states()
