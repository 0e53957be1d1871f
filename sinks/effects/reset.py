"""A connection torn down with a TCP RST (SO_LINGER 0): the client reads ECONNRESET.

At `connect` the proxy resets each new connection at once, without reaching the server;
at a later stage it resets the session when the client sends that command, which is then
not passed on (at `dot`: the final dot never reaches the server, unlike `drop`).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sinks.effects.base import Action, Context, Decision, Effect, Params, Stage


class ResetParams(Params):
    stage: Stage = Field(default=Stage.CONNECT, description="when the client is reset")

    @field_validator("stage")
    @classmethod
    def _seen_on_the_wire(cls, stage: Stage) -> Stage:
        if stage is Stage.ACK:
            raise ValueError("a proxy cannot see when the server commits a message (no ack)")
        if stage is Stage.REPLY:
            raise ValueError("a proxy resets at a client's command: name its stage, not `reply`")
        return stage


class Reset(Effect):
    kind = "reset"
    Params = ResetParams
    summary = "TCP RST to the client (SO_LINGER 0) at `stage` (default connect)"

    def __init__(self, params: ResetParams) -> None:
        super().__init__(params)
        self.stage = params.stage

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({self.stage})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return Action.RESET
