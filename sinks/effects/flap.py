"""A server that comes and goes: down for `period_s * duty`, up for the rest, repeatedly."""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import Field

from sinks.effects.base import Effect, FaultHost, Params


class FlapParams(Params):
    period_s: float = Field(gt=0, description="one down+up cycle, seconds")
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

    async def start(self, host: FaultHost) -> None:
        self.task = asyncio.create_task(self._cycle(host))

    async def _cycle(self, host: FaultHost) -> None:
        down_s = self.p.period_s * self.p.duty
        up_s = self.p.period_s - down_s
        while True:
            await host.close_listener()
            self.is_down = True
            host.record("flap.down", "start", {})
            await asyncio.sleep(down_s)
            await host.open_listener()
            self.is_down = False
            host.record("flap.down", "stop", {})
            await asyncio.sleep(up_s)

    async def stop(self, host: FaultHost) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.is_down:
            await host.open_listener()
            self.is_down = False
            host.record("flap.down", "stop", {})
