"""Mailboxes that do not exist: a provider's `user unknown`, at the stage it says it.

A real provider knows its mailboxes and refuses the others. This sink has no list of
mailboxes, so a glob over the recipient's local part says which do not exist; the
default is the form a campaign's `unknown_recipients` are sent to (maildrill.mailboxes),
so a drill's other recipients are always delivered. Gmail, Outlook.com and Postfix refuse
the one recipient at RCPT (the others of the message are still delivered); Yahoo refuses
the whole message after DATA when any recipient is unknown (its preset's stage is `dot`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from maildrill.hostnames import ascii_domain
from maildrill.mailboxes import UNKNOWN_PATTERN, local_matches
from sinks.effects.base import Context, Decision, Effect, Params, Stage
from sinks.replies import NO_SUCH_USER, Reply

# Where each provider says it: Yahoo after the message (sisimai: "end of DATA command").
_PRESET_STAGE = {"gmail": "rcpt", "yahoo": "dot", "outlook": "rcpt", "postfix": "rcpt"}


class MailboxesParams(Params):
    unknown: str = Field(
        default=UNKNOWN_PATTERN,
        min_length=1,
        max_length=64,
        description="glob over the recipient's local part (any case): no such mailbox",
    )
    domains: list[str] = Field(
        default_factory=list, description="only recipients in these domains; empty: all"
    )
    preset: Literal["gmail", "yahoo", "outlook", "postfix"] = "postfix"
    reply: str | None = Field(
        default=None, description="custom 4xx/5xx reply instead, {address} filled in"
    )
    stage: Literal["rcpt", "dot"] | None = Field(
        default=None, description="where it refuses; default the preset's (yahoo: dot)"
    )

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, domains: list[str]) -> list[str]:
        return [ascii_domain(d) for d in domains]

    @model_validator(mode="after")
    def _check(self) -> MailboxesParams:
        if self.reply is not None and Reply.parse(self.reply).code < 400:
            raise ValueError("reply: a refusal needs a 4xx or 5xx code")
        return self


class Mailboxes(Effect):
    kind = "mailboxes"
    Params = MailboxesParams
    summary = "no such mailbox for recipients matching `unknown`: the provider's 5xx (550 5.1.1)"

    def __init__(self, params: MailboxesParams) -> None:
        super().__init__(params)
        self.p = params
        self.template = Reply.parse(params.reply) if params.reply else NO_SUCH_USER[params.preset]
        self.stage = Stage(params.stage or _PRESET_STAGE[params.preset])
        self.domains = frozenset(params.domains)

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({self.stage})

    def unknown(self, address: str) -> bool:
        """Whether this sink has no mailbox for `address`."""
        if self.domains and address.rpartition("@")[2].lower() not in self.domains:
            return False
        return local_matches(address, self.p.unknown)

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        # After DATA the message is refused if any of its recipients is unknown.
        candidates = [ctx.address] if stage is Stage.RCPT else ctx.recipients
        for address in candidates:
            if self.unknown(address):
                t = self.template
                return Reply(t.code, t.enhanced, t.text.replace("{address}", address))
        return None
