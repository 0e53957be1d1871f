"""Greylisting: the first try of a (client, sender, recipient) triplet is deferred."""

from __future__ import annotations

from pydantic import Field

from maildrill.numbers import Seconds
from sinks.effects.base import Context, Decision, Effect, Params, Stage
from sinks.replies import GREYLISTED, Reply


class GreylistParams(Params):
    delay_s: Seconds = Field(default=5.0, ge=0, description="retry accepted after this long")
    expire_s: Seconds = Field(default=14400.0, gt=0, description="forget unretried triplets")


class Greylist(Effect):
    kind = "greylist"
    Params = GreylistParams
    summary = "450 4.2.0 on the first try of a client/sender/recipient triplet"

    def __init__(self, params: GreylistParams) -> None:
        super().__init__(params)
        self.p = params
        self.first_seen: dict[tuple[str, str, str], float] = {}

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.RCPT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        key = (ctx.session.peer_ip, ctx.mail_from.lower(), ctx.address.lower())
        seen = self.first_seen.get(key)
        if seen is None or ctx.now - seen > self.p.expire_s:
            self.first_seen[key] = ctx.now
            seen = ctx.now
        waited = ctx.now - seen
        if waited >= self.p.delay_s:
            return None
        left = max(1, round(self.p.delay_s - waited))
        return Reply(GREYLISTED.code, GREYLISTED.enhanced, GREYLISTED.text.format(delay=left))
