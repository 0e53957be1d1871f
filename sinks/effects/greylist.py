"""Greylisting: the first try of a (client, sender, recipient) triplet is deferred.

Triplets first seen more than `expire_s` ago are forgotten as time passes, not only
overwritten when they come back: a campaign mails each recipient about once, so a table
that kept every triplet would grow with the run (a soak of millions of messages), while
one that forgets them holds `expire_s` of them at most."""

from __future__ import annotations

from collections import OrderedDict

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
        # In the order first seen (a triplet is added, never moved), so the oldest is first.
        self.first_seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.RCPT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        self._forget(ctx.now)
        key = (ctx.session.peer_ip, ctx.mail_from.lower(), ctx.address.lower())
        seen = self.first_seen.get(key)
        if seen is None or ctx.now - seen > self.p.expire_s:  # (a clock stepped back)
            self.first_seen.pop(key, None)
            self.first_seen[key] = seen = ctx.now
        waited = ctx.now - seen
        if waited >= self.p.delay_s:
            return None
        left = max(1, round(self.p.delay_s - waited))
        return Reply(GREYLISTED.code, GREYLISTED.enhanced, GREYLISTED.text.format(delay=left))

    def _forget(self, now: float) -> None:
        """Drop the triplets first seen more than expire_s before `now` (oldest first)."""
        first_seen = self.first_seen
        while first_seen:
            key, seen = next(iter(first_seen.items()))
            if now - seen <= self.p.expire_s:
                return
            del first_seen[key]
