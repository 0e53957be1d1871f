"""What sinks and proxies share: effects in force, their timeline and the faults journal.

The control API (`sinks.control`) and the scheduled `faults:` drive an EffectHost the same
way whether it is a sink or a proxy; each subclass says which kinds it knows (`kinds`) and
how its listener closes and opens again (the FaultHost half that listener faults use).

Faults run on this host's own clock. A fault sent ahead (`start_at`, epoch seconds) waits
here as `pending`, already in the indices the decision path reads (`by_stage`,
`by_direction`), which hold only what is in force at the moment they are read: a
decision-level fault (reject, throttle, latency, ...) applies to every decision from its
`start_at` on, to the microsecond, however busy the loop is. A listener-level fault (down,
flap) acts from a timer armed on this loop at `start_at`. Its `until` is checked the same
way. The journaled `start` row is the moment the host first acted with the fault in force
(the first decision that saw it, or its timer), read from the clock then: never the plan
copied, so the onset error (`start` row minus `start_at`) is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from maildrill.fault_window import FaultWindow
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

# How many ended, cancelled or failed faults `fault(id)` still knows (GET /faults/{id}).
HISTORY = 1000


async def sleep_until(epoch: float) -> None:
    """Until the clock reads `epoch`: never earlier (a loop's timers may fire a little
    early against the wall clock: uvloop's are whole milliseconds of a cached time)."""
    while (left := epoch - time.time()) > 0:
        await asyncio.sleep(left)


@dataclass
class ActiveEffect(FaultWindow):
    """An effect pending or in force, with the probability and window its host applies."""

    id: str
    kind: str
    effect: Effect
    probability: float
    origin: str  # behaviour (steady), schedule, command
    params: dict[str, Any]
    opens: float  # epoch: the planned start (start_at), or when a live command came
    duration: float | None = None
    until: float | None = None
    scheduled: bool = False  # sent ahead with a start_at (its start row says which)
    onset: float | None = None  # when the host first acted with it in force (the start row)
    state: str = "pending"  # pending, active, then ended, cancelled or failed: WHY
    ended: float | None = None
    # Effects are asked in the order they take effect (the first reply wins): by this,
    # its start, kept by a replacement (PUT /behaviours) so the order stays.
    rank: float = 0.0
    begun: bool = False  # effect.start() done (stop() is owed)
    timer: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def started(self) -> float:
        """When its window opens (a proxy keys a session's draw of it by id and this)."""
        return self.opens


_Key = TypeVar("_Key")  # a Stage or a Direction


class InForce(Mapping[_Key, tuple[ActiveEffect, ...]]):
    """The effects at each stage (or direction) in force at the moment of asking: what the
    decision path reads. Holds pending effects too, so one that opens is seen at once."""

    def __init__(self, host: EffectHost, index: dict[_Key, tuple[ActiveEffect, ...]]) -> None:
        self._host = host
        self._index = index

    def __getitem__(self, key: _Key) -> tuple[ActiveEffect, ...]:
        candidates = self._index[key]
        return self._host.in_force(candidates) if candidates else ()

    def __iter__(self) -> Iterator[_Key]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class EffectHost:
    """Effects by id, started and stopped by schedule or command, each transition journaled."""

    kinds: ClassVar[Mapping[str, type[Effect]]] = EFFECTS

    def __init__(self, name: str, worker: int, rng: random.Random, faults: CsvJournal) -> None:
        self.name = name
        self.worker = worker
        self.rng = rng
        self.effects: dict[str, ActiveEffect] = {}  # pending and in force, in asking order
        self.by_stage: Mapping[Stage, tuple[ActiveEffect, ...]] = InForce(
            self, {s: () for s in Stage}
        )
        self.by_direction: Mapping[Direction, tuple[ActiveEffect, ...]] = InForce(
            self, {d: () for d in Direction}
        )
        self.server: asyncio.AbstractServer | None = None
        self.history: collections.OrderedDict[str, ActiveEffect] = collections.OrderedDict()
        self._faults = faults
        self._effect_ids = itertools.count(1)
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
            await self.add_effect(
                fault, origin="schedule", duration=fault.duration, start_at=zero + fault.at
            )

    async def stop_effects(self) -> None:
        """Cancel what is pending and stop what is in force (no `stop` rows: see README)."""
        for active in list(self.effects.values()):
            if active.timer is not None:
                active.timer.cancel()
            if active.begun:
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
        start_at: float | None = None,
    ) -> ActiveEffect:
        """Start `spec` now, or hold it pending until `start_at` (epoch seconds). Its window
        ends `duration` seconds after its planned start (a late start does not move the
        end). A `start_at` already past starts it at once, its start row saying when."""
        effect = build(spec.kind, spec.params, self.kinds)
        now = time.time()
        opens = now if start_at is None else start_at
        active = ActiveEffect(
            id=effect_id or f"{spec.kind}-{next(self._effect_ids)}",
            kind=spec.kind,
            effect=effect,
            probability=spec.probability,
            origin=origin,
            params=spec.params,
            opens=opens,
            duration=duration,
            until=None if duration is None else opens + duration,
            scheduled=start_at is not None,
            rank=opens,
        )
        if effect_id in self.effects:
            active.rank = self.effects[effect_id].rank  # a replacement keeps its place
        effect.until = active.until  # a timed effect may want to know (flap: no last phase)
        self.effects[active.id] = active
        self._reindex()
        if opens <= now:
            await self._begin(active)
        if active.until is not None or not active.begun:
            active.timer = asyncio.create_task(self._play(active))
        return active

    async def _play(self, active: ActiveEffect) -> None:
        """The timer of one effect: begin it at its start (unless begun), end it at its end."""
        if not active.begun:
            await sleep_until(active.opens)
            try:
                await self._begin(active)
            except OSError as exc:  # a listener that would not close or open
                self.record(active.kind, "stop", {}, active.id, active.origin)
                self._finish(active, f"failed: {exc}")
                return
        if active.until is not None:
            await sleep_until(active.until)
            await self.remove_effect(active.id, from_timer=True)

    async def _begin(self, active: ActiveEffect) -> None:
        """Carry the effect out: its start row (unless a decision already wrote it), then
        its own start (a listener fault acts here)."""
        if active.onset is None:
            self._took_effect(active, time.time())
        active.begun = True
        self._change()
        await active.effect.start(self)

    def _took_effect(self, active: ActiveEffect, now: float) -> None:
        """The first moment the host acted with `active` in force: its start row."""
        active.onset = now
        active.state = "active"
        params = dict(active.params, probability=active.probability)
        if active.duration is not None:
            params["duration"] = active.duration
        if active.scheduled:
            params["start_at"] = active.opens
        self.record(active.kind, "start", params, active.id, active.origin, when=now)

    def in_force(self, candidates: tuple[ActiveEffect, ...]) -> tuple[ActiveEffect, ...]:
        """Those of `candidates` whose window holds the clock now; one seen in force for the
        first time (before its timer) is journaled as started now."""
        now = time.time()
        if all(a.onset is not None and a.until is None for a in candidates):
            return candidates  # steady behaviours, or faults to the end: the common case
        out = []
        for active in candidates:
            if active.in_force(now):
                if active.onset is None:
                    self._took_effect(active, now)
                out.append(active)
        return tuple(out)

    async def remove_effect(self, effect_id: str, *, from_timer: bool = False) -> ActiveEffect:
        """Stop an effect in force (its stop row), or cancel one still pending (no rows)."""
        active = self.effects[effect_id]
        if active.timer is not None and not from_timer:
            active.timer.cancel()
        if active.onset is None:
            self._finish(active, "cancelled")
            return active
        del self.effects[effect_id]
        self._reindex()  # out of the decisions before its own stop is awaited
        if active.begun:
            await active.effect.stop(self)
        ended = _ended(active, from_timer)
        self.record(active.kind, "stop", {}, active.id, active.origin, when=ended)
        self._finish(active, "ended")
        return active

    def _finish(self, active: ActiveEffect, state: str) -> None:
        """Out of force for good: kept a while for `fault(id)`."""
        if self.effects.pop(active.id, None) is not None:
            self._reindex()
        active.state = state
        active.ended = time.time()
        self.history[active.id] = active
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)

    def fault(self, effect_id: str) -> ActiveEffect | None:
        """A fault pending, in force, or recently over (ended, cancelled, failed)."""
        return self.effects.get(effect_id) or self.history.get(effect_id)

    async def replace_effect(self, effect_id: str, spec: EffectSpec) -> ActiveEffect:
        """Swap in a new effect under the same id and in the same place in the order.

        Effects are asked in order and the first reply wins, so a replacement that
        moved to the end would change which behaviour answers.
        """
        old = self.effects[effect_id]
        if old.timer is not None:
            old.timer.cancel()
        if old.begun:
            await old.effect.stop(self)
        self.record(old.kind, "stop", {}, old.id, old.origin)
        return await self.add_effect(spec, old.origin, effect_id=effect_id)

    def _reindex(self) -> None:
        stages: dict[Stage, list[ActiveEffect]] = {s: [] for s in Stage}
        directions: dict[Direction, list[ActiveEffect]] = {d: [] for d in Direction}
        for active in sorted(self.effects.values(), key=lambda a: a.rank):
            for stage in active.effect.stages:
                stages[stage].append(active)
            for direction in active.effect.directions:
                directions[direction].append(active)
        self.by_stage = InForce(self, {s: tuple(v) for s, v in stages.items()})
        self.by_direction = InForce(self, {d: tuple(v) for d, v in directions.items()})
        self._change()

    def _change(self) -> None:
        self._changed.set()  # what a freeze holds asks again
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Until the effects in force next change (one added, begun at its start_at,
        removed or replaced)."""
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


def _ended(active: ActiveEffect, from_timer: bool) -> float | None:
    """When a fault stopped acting, for its stop row (None: now). One that acts only in
    decisions and ended on its schedule stopped at its planned end, for `in_force` reads
    the window itself: a command answered after it but before the late timer ran was
    already answered as without the fault. A listener fault stops when its own stop has
    run (the port open again), which is now."""
    on_the_listener = type(active.effect).stop is not Effect.stop
    if from_timer and active.until is not None and not on_the_listener:
        return max(active.until, active.onset or active.until)  # never before its start row
    return None
