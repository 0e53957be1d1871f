"""Limits a receiving MTA enforces per server, per connection and per message."""

from __future__ import annotations

from pydantic import Field

from sinks.effects.base import Context, Decision, Effect, Params, Stage
from sinks.replies import TOO_MANY_CONNECTIONS, TOO_MANY_MESSAGES, TOO_MANY_RECIPIENTS


class CapParams(Params):
    max: int = Field(ge=0)


class ConnectionCap(Effect):
    """Like Postfix's smtpd_client_connection_count_limit: 421 at the greeting, then close."""

    kind = "connection_cap"
    Params = CapParams
    summary = "at most `max` concurrent sessions; 421 4.7.0 then close"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.CONNECT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        assert isinstance(self.params, CapParams)
        return TOO_MANY_CONNECTIONS if ctx.active_sessions > self.params.max else None


class MessageCap(Effect):
    """Messages per connection, as MTAs cap them to spread load across connections."""

    kind = "message_cap"
    Params = CapParams
    summary = "at most `max` messages per connection; 421 4.7.0 at the next MAIL, then close"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.MAIL})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        assert isinstance(self.params, CapParams)
        return TOO_MANY_MESSAGES if ctx.session.messages >= self.params.max else None


class RecipientCap(Effect):
    """Recipients per message (Postfix smtpd_recipient_limit): 452 4.5.3 past the limit."""

    kind = "recipient_cap"
    Params = CapParams
    summary = "at most `max` recipients per message; 452 4.5.3 for the rest"

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.RCPT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        assert isinstance(self.params, CapParams)
        return TOO_MANY_RECIPIENTS if len(ctx.recipients) >= self.params.max else None
