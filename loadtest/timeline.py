"""The faults of a drill as a timeline: typed events at planned times, and their state.

Pure: built from the scenario, asked with the seconds elapsed since t0; no sockets, no
processes, no clock. The drill (`loadtest.orchestrate`) and `maildrill sinks`
(`loadtest.sinks_run`) carry the events out and tell the timeline how it went; the harness
record and the progress line read it back.

Four kinds of event:
- SinkFault: sent ahead to a maildrill sink or proxy, once t0 is known, carried as the
  `FaultSpec` the sink validates with its epoch start (t0 + at): the sink starts and ends
  it on its own clock, then says when it started (`settle`);
- DnsServerFault (`target: dns`): sent ahead the same way to the run's DNS server
  (`maildrill.dns.control`, the same requests and answers as a sink's control API);
- MtaStop: `postfix stop` / `postfix abort` of a Postfix instance under test;
- MtaRestart: `postfix start` of that instance after the stop's duration, a real outage
  that ends. Planned from the start, it is due only once its stop was carried out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loadtest.fault_event import DNS_TARGET, FaultEvent
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


@dataclass(frozen=True)
class DnsServerFault:
    """A fault of the run's DNS server (`maildrill.dns.faults`), as its control API takes
    it: `kind`, its parameters, `duration` and `probability` in `body`."""

    at: float
    kind: str
    duration: float | None
    body: dict[str, Any] = field(hash=False)
    target: ClassVar[str] = DNS_TARGET

    @property
    def params(self) -> dict[str, Any]:
        """The kind's own parameters (names, types, ms, records)."""
        return {k: v for k, v in self.body.items() if k not in ("kind", "probability", "duration")}

    @property
    def probability(self) -> float:
        return float(self.body.get("probability", 1.0))

    def request(self, start_at: float) -> dict[str, Any]:
        """The POST /faults body that schedules it at `start_at` (epoch seconds)."""
        return {**self.body, "start_at": start_at}


Event = SinkFault | DnsServerFault | MtaStop | MtaRestart
SentAhead = (SinkFault, DnsServerFault)  # started and ended on their server's own clock


@dataclass
class Planned:
    """One event and what became of it: `sent_at` (epoch s) once tried, and a status for
    the harness record (pending; a sink's fault: scheduled ID, then started ID; mta-stop
    done, started; failed: WHY)."""

    event: Event
    sent_at: float | None = None
    status: str = "pending"
    done: bool = False  # carried out (a restart waits for its stop's)
    fault_id: str | None = None  # a sink's fault: its id there, once sent ahead
    started_at: float | None = None  # a sink's fault: when the sink journaled it started
    asked_at: float = 0.0  # a sink's fault: when its sink was last asked whether it started

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")

    def scheduled(self, fault_id: str, when: float) -> None:
        """A sink's fault sent ahead and accepted under `fault_id`."""
        self.sent_at = when
        self.fault_id = fault_id
        self.status = f"scheduled {fault_id}"

    def settle(self, state: str, started: float | None) -> str | None:
        """What the sink says of the fault (`state`, the moment it `started`): started
        (done), still pending (None: ask again), or why it never will (the reason)."""
        if started is not None and state in ("active", "ended"):
            self.done = True
            self.started_at = started
            self.status = f"started {self.fault_id}"
            return None
        if state == "pending":
            return None
        server = "the DNS server" if isinstance(self.event, DnsServerFault) else "the sink"
        if state.startswith("failed: "):
            return f"{server} could not start it: {state.removeprefix('failed: ')}"
        if state == "cancelled":
            return f"cancelled on {server} before its time"
        return f"{server} says it is {state}"

    def record(self) -> dict[str, Any]:
        e = self.event
        out = {"at_s": e.at, "target": e.target, "kind": e.kind, "status": self.status}
        if self.started_at is not None:
            out["started_at"] = round(self.started_at, 6)
        return out


class Timeline:
    """Events in the order they are due: by planned time, a restart after any fault
    planned for the same moment (restarts ended the old drill's list)."""

    def __init__(self, events: list[Event]) -> None:
        order = sorted(events, key=lambda e: (e.at, isinstance(e, MtaRestart)))
        self.entries = [Planned(e) for e in order]
        self._stops = {p.event: p for p in self.entries if isinstance(p.event, MtaStop)}

    def sink_faults(self) -> list[Planned]:
        """The faults sent ahead to sinks, in order."""
        return [p for p in self.entries if isinstance(p.event, SinkFault)]

    def sent_ahead(self) -> list[Planned]:
        """The faults sent ahead to a sink or the DNS server, in order."""
        return [p for p in self.entries if isinstance(p.event, SentAhead)]

    def due(self, elapsed: float) -> Iterator[Planned]:
        """The MTA events (a sink's faults are sent ahead) not yet tried whose time has
        come, in order; a restart only once its stop was carried out. Lazy: what the
        caller does to one counts for the next."""
        for planned in self.entries:
            event = planned.event
            if isinstance(event, SentAhead):
                continue
            if planned.sent_at is not None or elapsed < event.at:
                continue
            if isinstance(event, MtaRestart) and not self._stops[event.ends].done:
                continue
            yield planned

    def unsettled(self, elapsed: float) -> list[Planned]:
        """Faults sent ahead, due by now, whose start their server has not confirmed."""
        return [
            p
            for p in self.sent_ahead()
            if p.fault_id is not None and not p.done and not p.failed and elapsed >= p.event.at
        ]

    def not_started(self) -> Planned | None:
        """The first fault that did not start and has not failed: the load outran it (not
        a restart: the MTA stops with the run)."""
        for planned in self.entries:
            if isinstance(planned.event, MtaRestart) or planned.done or planned.failed:
                continue
            return planned
        return None

    def active(self, elapsed: float) -> list[Planned]:
        """Faults started and not yet over by their duration (for the progress line)."""
        return [
            p
            for p in self.entries
            if p.done
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
        if fault.target == DNS_TARGET:
            events.append(DnsServerFault(fault.at, fault.kind, fault.duration, fault.body()))
            continue
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
