"""Slow replies: a per-command delay in milliseconds with uniform jitter."""

from __future__ import annotations

from pydantic import Field

from maildrill.numbers import Millis
from sinks.effects.base import Context, Decision, Delay, Effect, Params, Stage


class LatencyParams(Params):
    ms: Millis = Field(ge=0, description="delay before the reply, milliseconds")
    jitter_ms: Millis = Field(default=0.0, ge=0, description="uniform +/- jitter")
    stages: list[Stage] = Field(default_factory=lambda: [Stage.DOT], min_length=1)


class Latency(Effect):
    kind = "latency"
    Params = LatencyParams
    summary = "delay replies at the chosen stages by ms +/- jitter_ms"

    def __init__(self, params: LatencyParams) -> None:
        super().__init__(params)
        self.p = params

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset(self.p.stages)

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        ms = self.p.ms
        if self.p.jitter_ms:
            ms += ctx.rng.uniform(-self.p.jitter_ms, self.p.jitter_ms)
        return Delay(max(0.0, ms) / 1000.0)
