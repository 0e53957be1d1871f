"""The DNS faults pending and in force on the run's DNS server, on its own clock.

Like a sink's effect host (`sinks.host`, which this mirrors without importing it): a fault
sent ahead (`start_at`, epoch seconds) waits here as `pending`; each question asks the
board which faults are in force at that moment (`decide`, `overlay`), so a fault applies
from its `start_at` to the microsecond however late a timer fires, and stops applying at
`start_at + duration`. Its `start` row in faults-dns.csv is the moment the board first
acted with it in force (the first question that saw it, or its timer): measured, never the
plan copied. A fault that cannot start is `failed: WHY` and never applies.

A fault is described (`describe`) in the very JSON a sink's control API uses (id, kind,
origin, probability, params, state, start_at, started, until, ended), so the orchestrator
follows DNS faults with the client it follows sink faults with.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdataset
import dns.rdatatype

from maildrill.dns.faults import Decision, DnsFault, Hold, build
from maildrill.fault_window import FaultWindow
from maildrill.journal import CsvJournal
from maildrill.records import FaultRecord

NAME = "dns"  # its faults journal is faults-dns.csv; its rows say `sink: dns`
HISTORY = 1000  # faults over and still known to `fault(id)`


@dataclass
class ActiveDnsFault(FaultWindow):
    id: str
    kind: str
    fault: DnsFault
    probability: float
    origin: str  # schedule or command
    params: dict[str, Any]
    opens: float  # epoch: the planned start, or when the command came
    duration: float | None
    scheduled: bool
    until: float | None = None
    onset: float | None = None  # its start row
    state: str = "pending"
    ended: float | None = None
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


async def _sleep_until(epoch: float) -> None:
    while (left := epoch - time.time()) > 0:
        await asyncio.sleep(left)


class FaultBoard:
    """DNS faults by id, started and stopped by schedule or command, each journaled."""

    def __init__(self, journal: CsvJournal | None, rng: random.Random | None = None) -> None:
        self.journal = journal
        self.rng = rng or random.Random()
        self.faults: dict[str, ActiveDnsFault] = {}  # pending and in force, by start
        self.history: collections.OrderedDict[str, ActiveDnsFault] = collections.OrderedDict()
        self._ids = itertools.count(1)

    # -- what the server asks, per question ---------------------------------------------

    def in_force(self) -> list[ActiveDnsFault]:
        """The faults in force now (in the order they opened); one seen in force for the
        first time is journaled as started now; one past its window, as stopped."""
        if not self.faults:
            return []
        now = time.time()
        out = []
        for active in list(self.faults.values()):
            if active.until is not None and now >= active.until:
                self._stop(active, active.until)
            elif active.in_force(now):
                if active.onset is None:
                    self._took_effect(active, now)
                out.append(active)
        return out

    def decide(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, faults: list[ActiveDnsFault]
    ) -> tuple[list[Decision], list[str]]:
        """What `faults` (in force) do to this question: the delays that hold the answer
        back, then at most one decision that replaces it (the first fault that has one),
        and the ids of the faults that acted (for the query journal)."""
        decisions: list[Decision] = []
        acted: list[str] = []
        for active in faults:
            fault = active.fault
            if not fault.applies(name, rdtype):
                continue
            if active.probability < 1.0 and self.rng.random() >= active.probability:
                continue
            decision = fault.decide(name, rdtype)
            if decision is None:
                continue
            decisions.append(decision)
            acted.append(active.id)
            if not isinstance(decision, Hold):
                break
        return decisions, acted

    @staticmethod
    def overlay(
        faults: list[ActiveDnsFault],
    ) -> dict[tuple[dns.name.Name, dns.rdatatype.RdataType], tuple[dns.rdataset.Rdataset, str]]:
        """The record sets `records` faults in force serve instead, with the fault's id: the
        one that opened last wins a set two of them replace."""
        sets: dict[
            tuple[dns.name.Name, dns.rdatatype.RdataType], tuple[dns.rdataset.Rdataset, str]
        ] = {}
        for active in faults:
            for key, rdataset in active.fault.overlay().items():
                sets[key] = (rdataset, active.id)
        return sets

    # -- schedule and command -----------------------------------------------------------

    def add(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        probability: float = 1.0,
        duration: float | None = None,
        start_at: float | None = None,
    ) -> ActiveDnsFault:
        """Start a fault now, or hold it pending until `start_at`; ValueError (pydantic's
        ValidationError among them) when its kind or parameters are wrong. Must run on
        the server's event loop (it arms the fault's timer there)."""
        fault = build(kind, params)
        if kind == "records" and probability != 1.0:
            raise ValueError("records: probability does not apply (the records are served)")
        now = time.time()
        opens = now if start_at is None else start_at
        active = ActiveDnsFault(
            id=f"dns-{kind}-{next(self._ids)}",
            kind=kind,
            fault=fault,
            probability=probability,
            origin="command" if start_at is None else "schedule",
            params=dict(params),
            opens=opens,
            duration=duration,
            scheduled=start_at is not None,
            until=None if duration is None else opens + duration,
        )
        self.faults[active.id] = active
        self.faults = dict(sorted(self.faults.items(), key=lambda kv: kv[1].opens))
        if opens <= now:  # a command, or a start already past: in force from now
            self._took_effect(active, now)
        active.timer = asyncio.get_running_loop().create_task(self._play(active))
        return active

    async def _play(self, active: ActiveDnsFault) -> None:
        await _sleep_until(active.opens)
        if active.onset is None and active.id in self.faults:
            self._took_effect(active, time.time())
        if active.until is not None:
            await _sleep_until(active.until)
            if active.id in self.faults:
                self._stop(active, active.until)

    def remove(self, fault_id: str) -> ActiveDnsFault | None:
        """Stop a fault in force (its stop row), or cancel one pending (no rows)."""
        active = self.faults.get(fault_id)
        if active is None:
            return None
        if active.timer is not None:
            active.timer.cancel()
        if active.onset is None:
            self._finish(active, "cancelled")
        else:
            self._stop(active, time.time())
        return active

    def fault(self, fault_id: str) -> ActiveDnsFault | None:
        return self.faults.get(fault_id) or self.history.get(fault_id)

    def close(self) -> None:
        for active in list(self.faults.values()):
            if active.timer is not None:
                active.timer.cancel()

    # -- journal ------------------------------------------------------------------------

    def _took_effect(self, active: ActiveDnsFault, now: float) -> None:
        active.onset = now
        active.state = "active"
        params = dict(active.params, probability=active.probability)
        if active.duration is not None:
            params["duration"] = active.duration
        if active.scheduled:
            params["start_at"] = active.opens
        self._record(active, "start", params, now)

    def _stop(self, active: ActiveDnsFault, when: float) -> None:
        if active.onset is None:  # its whole window passed unasked: it did start
            self._took_effect(active, active.opens)
        self._record(active, "stop", {}, when)
        self._finish(active, "ended")

    def _finish(self, active: ActiveDnsFault, state: str) -> None:
        self.faults.pop(active.id, None)
        active.state = state
        active.ended = time.time()
        self.history[active.id] = active
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)

    def _record(
        self, active: ActiveDnsFault, state: str, params: Mapping[str, Any], when: float
    ) -> None:
        if self.journal is None:
            return
        self.journal.write(
            FaultRecord(
                time=when,
                sink=NAME,
                worker=0,
                kind=active.kind,
                state=state,
                fault_id=active.id,
                origin=active.origin,
                params=json.dumps(dict(params), sort_keys=True, default=str),
            )
        )
