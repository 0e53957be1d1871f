"""RFC 1047: the message arrives, the connection dies before the 250, the sender retries.

The message is journaled as received, so the analysis can count the duplicate the
sender's retry creates.
"""

from __future__ import annotations

from sinks.effects.base import Action, Context, Decision, Effect, Stage


class Drop(Effect):
    kind = "drop"
    summary = "close the connection after the final dot, before the reply"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.DOT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return Action.DROP
