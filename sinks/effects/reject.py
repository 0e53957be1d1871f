"""A fixed 4xx or 5xx reply at one stage; use `probability` to reject a share."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from sinks.effects.base import Context, Decision, Effect, Params, Stage
from sinks.replies import Reply


class RejectParams(Params):
    stage: Stage
    code: int = Field(ge=400, le=599)
    enhanced: str = ""
    text: str = "Error: rejected by maildrill"

    @field_validator("stage")
    @classmethod
    def _a_command(cls, stage: Stage) -> Stage:
        if stage is Stage.REPLY:
            raise ValueError("a reject answers a command: name its stage, not `reply`")
        return stage

    @model_validator(mode="after")
    def _check(self) -> RejectParams:
        if self.enhanced:
            Reply.parse(f"{self.code} {self.enhanced} x")
            if self.enhanced[0] != str(self.code)[0]:
                raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")
        return self


class Reject(Effect):
    kind = "reject"
    Params = RejectParams
    summary = "reply `code enhanced text` at `stage` (connect, ehlo, mail, rcpt, data, dot, ack)"

    def __init__(self, params: RejectParams) -> None:
        super().__init__(params)
        self.reply = Reply(params.code, params.enhanced, params.text)
        self.stage = params.stage

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({self.stage})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return self.reply
