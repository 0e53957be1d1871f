"""A server that comes and goes: down for `period_s * duty`, up for the rest, repeatedly."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

from pydantic import Field

from maildrill.numbers import Seconds
from sinks.effects.base import Effect, FaultHost, Params

# A phase that would begin this close to the fault's end is not begun: the end and the
# phase edge fall on the same instant, and which timer fires first is chance.
LAST_PHASE_S = 0.005


class FlapParams(Params):
    period_s: Seconds = Field(gt=0, description="one down+up cycle, seconds")
    duty: float = Field(default=0.5, gt=0, lt=1, description="share of each period spent down")


class Flap(Effect):
    kind = "flap"
    Params = FlapParams
    summary = "down and up repeatedly with period_s and duty; each phase journaled as flap.down"

    def __init__(self, params: FlapParams) -> None:
        super().__init__(params)
        self.p = params
        self.task: asyncio.Task[None] | None = None
        self.is_down = False
        self._stopping = asyncio.Event()

    async def start(self, host: FaultHost) -> None:
        self.task = asyncio.create_task(self._cycle(host))

    async def _cycle(self, host: FaultHost) -> None:
        # Phases are timed from the start, not from the end of the last transition,
        # or the transitions' own cost would add up and the period drift.
        loop = asyncio.get_running_loop()
        period = self.p.period_s
        down_s = period * self.p.duty
        start = loop.time()
        for cycle in itertools.count():
            if self.until is not None and time.time() >= self.until - LAST_PHASE_S:
                return  # the fault ends now: no down phase of a few microseconds
            await host.close_listener()
            self.is_down = True
            host.record("flap.down", "start", {})
            if await self._stopped_within(start + cycle * period + down_s - loop.time()):
                return
            await host.open_listener()
            self.is_down = False
            host.record("flap.down", "stop", {})
            if await self._stopped_within(start + (cycle + 1) * period - loop.time()):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait out one phase; True when stop() came meanwhile.

        The cycle ends only here, never by cancellation: a create_server cancelled
        midway keeps its socket bound, and the sink could neither close nor reopen it.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        # Asked, not the wait's result: a stop in the phase's last loop step can lose to
        # the timeout, and the cycle would start one more (sub-millisecond) phase.
        return self._stopping.is_set()

    async def stop(self, host: FaultHost) -> None:
        if self.task is not None:
            self._stopping.set()
            await self.task
            self.task = None
        if self.is_down:
            await host.open_listener()
            self.is_down = False
            host.record("flap.down", "stop", {})
