"""Token-bucket rate limits, keyed per sink, per client IP or per recipient domain."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sinks.effects.base import Context, Decision, Effect, Params, Stage
from sinks.replies import PRESETS, Reply


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ThrottleParams(Params):
    rate: float = Field(gt=0, description="messages (or recipients) per second")
    burst: float | None = Field(default=None, ge=1, description="bucket size; default max(1, rate)")
    per: Literal["sink", "client", "domain"] = "sink"
    stage: Literal["mail", "rcpt", "dot"] | None = Field(
        default=None, description="where tokens are taken; default rcpt for per=domain, else mail"
    )
    preset: Literal["gmail", "yahoo", "outlook", "postfix"] | None = None
    reply: str | None = Field(default=None, description="custom reply, e.g. '451 4.7.1 slow down'")

    @model_validator(mode="after")
    def _check(self) -> ThrottleParams:
        if self.reply is not None:
            Reply.parse(self.reply)
        if self.per == "domain" and self.stage == "mail":
            raise ValueError("per=domain needs stage rcpt or dot: MAIL carries no recipient")
        return self


class Throttle(Effect):
    kind = "throttle"
    Params = ThrottleParams
    summary = "token bucket per sink, client IP or recipient domain; provider-style 4xx replies"

    def __init__(self, params: ThrottleParams) -> None:
        super().__init__(params)
        self.p = params
        self.burst = params.burst if params.burst is not None else max(1.0, params.rate)
        default_stage = "rcpt" if params.per == "domain" else "mail"
        self.stage = Stage(params.stage or default_stage)
        if params.reply is not None:
            self.template = Reply.parse(params.reply)
        else:
            self.template = PRESETS[params.preset or "postfix"]
        self.buckets: dict[str, TokenBucket] = {}

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({self.stage})

    def _keys(self, ctx: Context) -> list[str]:
        if self.p.per == "sink":
            return [""]
        if self.p.per == "client":
            return [ctx.session.peer_ip]
        if self.stage is Stage.RCPT:
            return [ctx.address.rpartition("@")[2].lower()]
        return sorted({r.rpartition("@")[2].lower() for r in ctx.recipients})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        for key in self._keys(ctx):
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(self.p.rate, self.burst, ctx.now)
            if not bucket.take(ctx.now):
                t = self.template
                return Reply(t.code, t.enhanced, t.text.replace("{peer}", ctx.session.peer_ip))
        return None
