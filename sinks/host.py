"""What sinks and proxies share: effects in force, their timeline and the faults journal.

The control API (`sinks.control`) and the scheduled `faults:` drive an EffectHost the same
way whether it is a sink or a proxy; each subclass says which kinds it knows (`kinds`) and
how its listener closes and opens again (the FaultHost half that listener faults use).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from maildrill.journal import CsvJournal
from maildrill.records import FaultRecord
from sinks.config import EffectSpec, FaultSpec
from sinks.effects import (
    EFFECTS,
    Action,
    Context,
    Decision,
    Delay,
    Direction,
    Effect,
    Stage,
    build,
)


@dataclass
class ActiveEffect:
    """An effect in force, with the probability and window its host applies to it."""

    id: str
    kind: str
    effect: Effect
    probability: float
    origin: str  # behaviour (steady), schedule, command
    params: dict[str, Any]
    started: float
    until: float | None = None
    timer: asyncio.Task[None] | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "origin": self.origin,
            "probability": self.probability,
            "params": self.params,
            "started": round(self.started, 6),
            "until": None if self.until is None else round(self.until, 6),
        }


class EffectHost:
    """Effects by id, started and stopped by schedule or command, each transition journaled."""

    kinds: ClassVar[Mapping[str, type[Effect]]] = EFFECTS

    def __init__(self, name: str, worker: int, rng: random.Random, faults: CsvJournal) -> None:
        self.name = name
        self.worker = worker
        self.rng = rng
        self.effects: dict[str, ActiveEffect] = {}
        self.by_stage: dict[Stage, tuple[ActiveEffect, ...]] = {s: () for s in Stage}
        self.by_direction: dict[Direction, tuple[ActiveEffect, ...]] = {d: () for d in Direction}
        self.server: asyncio.AbstractServer | None = None
        self._faults = faults
        self._effect_ids = itertools.count(1)
        self._schedule: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()  # set (and replaced) whenever the effects change

    # -- what subclasses provide (FaultHost and reporting) ------------------------------

    async def close_listener(self) -> None:
        raise NotImplementedError

    async def open_listener(self) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- the timeline -------------------------------------------------------------------

    async def start_effects(
        self, behaviours: Sequence[EffectSpec], faults: Sequence[FaultSpec], zero: float
    ) -> None:
        """Steady behaviours now; each scheduled fault at `zero + at` (epoch seconds)."""
        for spec in behaviours:
            await self.add_effect(spec, origin="behaviour")
        for fault in faults:
            self._schedule.append(asyncio.create_task(self._scheduled(fault, zero)))

    async def _scheduled(self, fault: FaultSpec, zero: float) -> None:
        await asyncio.sleep(max(0.0, zero + fault.at - time.time()))
        await self.add_effect(fault, origin="schedule", duration=fault.duration)

    async def stop_effects(self) -> None:
        """Cancel what is scheduled and stop what is in force (no `stop` rows: see README)."""
        for task in self._schedule:
            task.cancel()
        for active in list(self.effects.values()):
            if active.timer is not None:
                active.timer.cancel()
            await active.effect.stop(self)

    def record(
        self,
        kind: str,
        state: str,
        params: Mapping[str, Any],
        fault_id: str = "",
        origin: str = "",
        when: float | None = None,
    ) -> None:
        self._faults.write(
            FaultRecord(
                time=time.time() if when is None else when,
                sink=self.name,
                worker=self.worker,
                kind=kind,
                state=state,
                fault_id=fault_id,
                origin=origin,
                params=json.dumps(dict(params), sort_keys=True, default=str),
            )
        )

    # -- effects ------------------------------------------------------------------------

    async def add_effect(
        self,
        spec: EffectSpec,
        origin: str,
        duration: float | None = None,
        *,
        effect_id: str | None = None,
    ) -> ActiveEffect:
        effect = build(spec.kind, spec.params, self.kinds)
        now = time.time()
        active = ActiveEffect(
            id=effect_id or f"{spec.kind}-{next(self._effect_ids)}",
            kind=spec.kind,
            effect=effect,
            probability=spec.probability,
            origin=origin,
            params=spec.params,
            started=now,
            until=None if duration is None else now + duration,
        )
        params = dict(spec.params, probability=spec.probability)
        if duration is not None:
            params["duration"] = duration
        self.record(spec.kind, "start", params, active.id, origin, when=now)
        self.effects[active.id] = active
        effect.until = active.until  # a timed effect may want to know (flap: no last phase)
        await effect.start(self)
        self._reindex()
        if duration is not None:
            active.timer = asyncio.create_task(self._expire(active.id, duration))
        return active

    async def _expire(self, effect_id: str, duration: float) -> None:
        await asyncio.sleep(duration)
        await self.remove_effect(effect_id, from_timer=True)

    async def remove_effect(self, effect_id: str, *, from_timer: bool = False) -> ActiveEffect:
        active = self.effects.pop(effect_id)
        if active.timer is not None and not from_timer:
            active.timer.cancel()
        self._reindex()
        await active.effect.stop(self)
        self.record(active.kind, "stop", {}, active.id, active.origin)
        return active

    async def replace_effect(self, effect_id: str, spec: EffectSpec) -> ActiveEffect:
        """Swap in a new effect under the same id and in the same place in the order.

        Effects are asked in order and the first reply wins, so a replacement that
        moved to the end would change which behaviour answers.
        """
        old = self.effects[effect_id]
        if old.timer is not None:
            old.timer.cancel()
        await old.effect.stop(self)
        self.record(old.kind, "stop", {}, old.id, old.origin)
        return await self.add_effect(spec, old.origin, effect_id=effect_id)

    def _reindex(self) -> None:
        stages: dict[Stage, list[ActiveEffect]] = {s: [] for s in Stage}
        directions: dict[Direction, list[ActiveEffect]] = {d: [] for d in Direction}
        for active in self.effects.values():
            for stage in active.effect.stages:
                stages[stage].append(active)
            for direction in active.effect.directions:
                directions[direction].append(active)
        self.by_stage = {s: tuple(v) for s, v in stages.items()}
        self.by_direction = {d: tuple(v) for d, v in directions.items()}
        self._changed.set()  # what a freeze holds asks again
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Until the effects in force next change (one added, removed or replaced)."""
        await self._changed.wait()

    def applies(self, active: ActiveEffect) -> bool:
        """The one place probability is applied: a fresh draw for each decision."""
        return active.probability >= 1.0 or self.rng.random() < active.probability

    async def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        """Ask the effects active at `stage`, in order; delays add up, the first reply wins."""
        decided = await self.decide_kind(stage, ctx)
        return None if decided is None else decided[1]

    async def decide_kind(self, stage: Stage, ctx: Context) -> tuple[str, Decision] | None:
        """As `decide`, with the kind of effect that decided (for journals).

        A FREEZE is never returned: the caller is held here (`ctx.session.held_by` names
        the kind meanwhile) until the effects in force change, then the stage is asked
        again. So every stage a sink or proxy asks honours a freeze with no code of its
        own, and a caller whose client leaves is cancelled here, having done nothing.
        """
        while True:
            for active in self.by_stage[stage]:
                if not self.applies(active):
                    continue
                decision = active.effect.decide(stage, ctx)
                if decision is None:
                    continue
                if isinstance(decision, Delay):
                    await asyncio.sleep(decision.seconds)
                    continue
                if decision is Action.FREEZE:
                    break
                return active.kind, decision
            else:
                return None
            ctx.session.held_by = active.kind
            try:
                await self.changed()
            finally:
                ctx.session.held_by = ""
            ctx.now = time.monotonic()
