"""An overloaded server: 421 at the greeting, then close."""

from __future__ import annotations

from sinks.effects.base import Context, Decision, Effect, Stage
from sinks.replies import BUSY


class Busy(Effect):
    kind = "busy"
    summary = "421 4.3.2 at the greeting, then close"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.CONNECT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return BUSY
