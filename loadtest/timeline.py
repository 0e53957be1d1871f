"""The faults of a drill as a timeline: typed events at planned times, and their state.

Pure: built from the scenario, asked with the seconds elapsed since t0; no sockets, no
processes, no clock. The drill (`loadtest.orchestrate`) carries each due event out and
tells the timeline how it went; the harness record and the progress line read it back.

Three kinds of event:
- SinkFault: started on a maildrill sink or proxy through its control API, carried as the
  `FaultSpec` the sink validates (the sink ends it after its duration itself);
- MtaStop: `postfix stop` / `postfix abort` of a Postfix instance under test;
- MtaRestart: `postfix start` of that instance after the stop's duration, a real outage
  that ends. Planned from the start, it is due only once its stop was carried out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from loadtest.fault_event import FaultEvent
from loadtest.scenario import Scenario
from sinks.config import FaultSpec
from sinks.effects import kinds_for


@dataclass(frozen=True)
class SinkFault:
    at: float
    target: str
    spec: FaultSpec

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def duration(self) -> float | None:
        return self.spec.duration


@dataclass(frozen=True)
class MtaStop:
    at: float
    target: str
    kind: str  # mta-stop or mta-abort, as the scenario names it
    duration: float | None
    # Its rows in faults-TARGET.csv. Numbered as the drill always has: `KIND-N`, N the
    # entries of the harness record's fault list when it is carried out (the scenario's
    # faults and the restarts planned before it), so old and new runs read alike.
    fault_id: str

    @property
    def how(self) -> str:
        """The postfix command: stop (orderly) or abort (in-flight deliveries cut)."""
        return "stop" if self.kind == "mta-stop" else "abort"


@dataclass(frozen=True)
class MtaRestart:
    at: float
    target: str
    ends: MtaStop
    kind: ClassVar[str] = "mta-start"  # its name in harness.json and the events
    duration: ClassVar[None] = None


Event = SinkFault | MtaStop | MtaRestart


@dataclass
class Planned:
    """One event and what became of it: `sent_at` (epoch s) once tried, and a status for
    the harness record (pending, started ID, mta-stop done, started, failed: WHY)."""

    event: Event
    sent_at: float | None = None
    status: str = "pending"
    done: bool = False  # carried out (a restart waits for its stop's)

    def record(self) -> dict[str, Any]:
        e = self.event
        return {"at_s": e.at, "target": e.target, "kind": e.kind, "status": self.status}


class Timeline:
    """Events in the order they are due: by planned time, a restart after any fault
    planned for the same moment (restarts ended the old drill's list)."""

    def __init__(self, events: list[Event]) -> None:
        order = sorted(events, key=lambda e: (e.at, isinstance(e, MtaRestart)))
        self.entries = [Planned(e) for e in order]
        self._stops = {p.event: p for p in self.entries if isinstance(p.event, MtaStop)}

    def due(self, elapsed: float) -> Iterator[Planned]:
        """Events not yet tried whose time has come, in order; a restart only once its
        stop was carried out. Lazy: what the caller does to one counts for the next."""
        for planned in self.entries:
            event = planned.event
            if planned.sent_at is not None or elapsed < event.at:
                continue
            if isinstance(event, MtaRestart) and not self._stops[event.ends].done:
                continue
            yield planned

    def never_sent(self) -> Planned | None:
        """The first fault the load outran (not a restart: the MTA stops with the run)."""
        for planned in self.entries:
            if planned.sent_at is None and not isinstance(planned.event, MtaRestart):
                return planned
        return None

    def active(self, elapsed: float) -> list[Planned]:
        """Faults sent and not yet over by their duration (for the progress line)."""
        return [
            p
            for p in self.entries
            if p.sent_at is not None
            and not isinstance(p.event, MtaRestart)
            and (p.event.duration is None or elapsed < p.event.at + p.event.duration)
        ]

    def records(self) -> list[dict[str, Any]]:
        """harness.json's `faults`: the scenario's faults by time, then the restarts of the
        stops carried out, in the order of those stops."""
        faults = [p for p in self.entries if not isinstance(p.event, MtaRestart)]
        restart_of = {p.event.ends: p for p in self.entries if isinstance(p.event, MtaRestart)}
        restarts = [
            restart_of[p.event]
            for p in faults
            if isinstance(p.event, MtaStop) and p.done and p.event in restart_of
        ]
        return [p.record() for p in faults + restarts]


def plan(scenario: Scenario) -> Timeline:
    """Every fault of the scenario, each MTA stop with a duration followed by its restart."""
    faults = sorted(scenario.faults, key=lambda f: f.at)
    events: list[Event] = []
    restarts = 0
    for fault in faults:
        server = scenario.server(fault.target)
        if server.postfix is None:
            events.append(SinkFault(fault.at, fault.target, _spec(fault, server.mode)))
            continue
        stop = MtaStop(
            at=fault.at,
            target=fault.target,
            kind=fault.kind,
            duration=fault.duration,
            fault_id=f"{fault.kind}-{len(faults) + restarts}",
        )
        events.append(stop)
        if fault.duration:
            events.append(MtaRestart(fault.at + fault.duration, fault.target, stop))
            restarts += 1
    return Timeline(events)


def _spec(fault: FaultEvent, mode: str) -> FaultSpec:
    """The fault as the target sink validates it (a proxy knows kinds of its own)."""
    data = {"at": fault.at, **fault.body()}
    return FaultSpec.model_validate(data, context={"kinds": kinds_for(mode)})
