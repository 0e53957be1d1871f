"""Black hole: the TCP handshake completes but no banner ever comes."""

from __future__ import annotations

from sinks.effects.base import Action, Context, Decision, Effect, Stage


class Hang(Effect):
    kind = "hang"
    summary = "accept TCP, never send the banner"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.CONNECT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return Action.HANG
