"""A scenario's `campaign:` section: the message streams and the schedule that sends them.

Each stage and stream is checked alone, and the whole campaign against the time and
message limits (loadtest.limits); the runtime types it builds are loadtest.campaign's
StreamSpec and loadtest.schedule's Schedule.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from loadtest.addresses import header_text, split_address
from loadtest.campaign import DEFAULT_DOMAINS, StreamPlan, StreamSpec
from loadtest.limits import MAX_MESSAGE_BYTES, MAX_MESSAGES, MAX_RATE, MAX_RECIPIENTS
from loadtest.schedule import Priority, Schedule, Stage
from loadtest.strict_model import StrictModel
from maildrill.hostnames import ascii_domain, ascii_domain_keys
from maildrill.numbers import MAX_DURATION_S, Seconds, at_most

# What `streams.NAME.METRIC` in an SLO can spell (loadtest.analysis.slo._RULE).
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# Limits of one field, named in its error (README: Scenario limits; loadtest.limits).
Bytes = Annotated[int, at_most(MAX_MESSAGE_BYTES, "bytes", "64 MiB")]
Recipients = Annotated[int, at_most(MAX_RECIPIENTS, "recipients per message")]
Rate = Annotated[float, at_most(MAX_RATE, "msgs/s")]
Messages = Annotated[int, at_most(MAX_MESSAGES, "messages")]


class StreamModel(StrictModel):
    name: str = Field(
        default="promotional",
        description="X-Maildrill-Stream; by-stream key; letters, digits, . - _",
    )
    weight: float = Field(default=1.0, gt=0, description="share of the campaign")
    sender: str = Field(
        default="news@example.com",
        description="envelope and From: a plain address, reserved or allowed domain",
    )
    subject: str = Field(
        default="Spring sale: {index}", description="{index}, {stream} filled in; one line"
    )
    size_median: Bytes = Field(default=20_000, ge=200, description="bytes, whole message")
    size_sigma: float = Field(
        default=0.5, ge=0, le=10, description="lognormal shape; 0: all the median"
    )
    size_min: Bytes = Field(default=1_500, ge=200, description="bytes")
    size_max: Bytes = Field(default=500_000, ge=200, description="bytes")
    recipients_min: Recipients = Field(default=1, ge=1, description="per message")
    recipients_max: Recipients = Field(default=1, ge=1, description="per message")
    domains: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_DOMAINS),
        description="recipient domain weights (reserved domains unless allowed)",
    )
    attachment_share: float = Field(
        default=0.0, ge=0, le=1, description="share with a PDF attachment"
    )
    attachment_size: Bytes = Field(default=30_000, ge=0, description="bytes before base64")
    unknown_recipients: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of recipients with no mailbox (nosuchuser.N); null: the campaign's",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="when the sender falls behind, due messages (retries too) of a higher "
        "priority go first; equal: the schedule's order",
    )

    @field_validator("name", "subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return header_text(value, "a header value")

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        """A stream is known by its name (routes, results, `streams.NAME.METRIC` SLOs):
        an empty one names nothing an SLO or a route could spell."""
        if not value.strip():
            raise ValueError("a stream needs a name")
        if not _STREAM_NAME.fullmatch(value):
            raise ValueError(
                f"stream name {value!r}: letters, digits, '.', '-' and '_' only (an SLO "
                "names it as streams.NAME.METRIC)"
            )
        return value

    @field_validator("sender")
    @classmethod
    def _plain_sender(cls, value: str) -> str:
        local, domain = split_address(value)
        return f"{local}@{domain}"

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, domains: dict[str, float]) -> dict[str, float]:
        return ascii_domain_keys(domains)

    @model_validator(mode="after")
    def _ranges(self) -> StreamModel:
        if self.size_min > self.size_max:
            raise ValueError("size_min is larger than size_max")
        if self.recipients_min > self.recipients_max:
            raise ValueError("recipients_min is larger than recipients_max")
        if not self.domains or any(w <= 0 for w in self.domains.values()):
            raise ValueError("domains needs at least one domain, each with a weight > 0")
        return self

    def spec(self, unknown_recipients: float = 0.0, unknown_addresses: int = 1000) -> StreamSpec:
        """The runtime stream; the campaign's `unknown_*` where the stream sets none."""
        fields = self.model_dump(exclude={"unknown_recipients"})
        share = self.unknown_recipients
        return StreamSpec(
            **fields,
            unknown_recipients=unknown_recipients if share is None else share,
            unknown_addresses=unknown_addresses,
        )


class StageSpec(StrictModel):
    """`rate` msgs/s (ramping to `to_rate` if given), or `messages` spread evenly."""

    duration_s: Seconds = Field(gt=0, description="seconds")
    rate: Rate | None = Field(default=None, ge=0, description="msgs/s at the stage start")
    to_rate: Rate | None = Field(default=None, ge=0, description="msgs/s at its end (a ramp)")
    messages: Messages | None = Field(
        default=None, ge=0, description="instead of rate: spread evenly"
    )

    @model_validator(mode="after")
    def _one_of(self) -> StageSpec:
        if (self.rate is None) == (self.messages is None):
            raise ValueError("give either rate (msgs/s) or messages, not both")
        if self.messages is not None and self.to_rate is not None:
            raise ValueError("to_rate goes with rate, not with messages")
        if self.messages is not None and self.messages > MAX_RATE * self.duration_s:
            raise ValueError(
                f"messages: {self.messages} in {self.duration_s:g} s is more than the limit "
                f"of {MAX_RATE} msgs/s"
            )
        return self

    def stage(self) -> Stage:
        if self.messages is not None:
            return Stage(self.duration_s, self.messages / self.duration_s)
        assert self.rate is not None
        return Stage(self.duration_s, self.rate, self.to_rate)


class CampaignSpec(StrictModel):
    seed: int = Field(default=1, description="same seed, same messages")
    streams: list[StreamModel] = Field(
        default_factory=lambda: [StreamModel()], min_length=1, description="message streams"
    )
    schedule: list[StageSpec] = Field(min_length=1, description="stages laid end to end")
    drain_s: Seconds = Field(
        default=10.0,
        ge=0,
        description="after the schedule, for retries; then as long for MTAs and backup MXs "
        "to hand on what they queued (what is left is stranded)",
    )
    allowed_recipient_domains: list[str] = Field(
        default_factory=list, description="real domains you may send to (and send from)"
    )
    unknown_recipients: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of recipients with no mailbox, for streams that set none "
        "(a sink's `mailboxes` behaviour refuses them; 0: today's messages, exactly)",
    )
    unknown_addresses: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="distinct unknown mailboxes per domain they are drawn from (few: the "
        "same ones come back, and are suppressed after their first hard bounce)",
    )

    @field_validator("allowed_recipient_domains")
    @classmethod
    def _domain_names(cls, domains: list[str]) -> list[str]:
        """Domain names, kept in the ASCII form they are sent in."""
        return [ascii_domain(d) for d in domains]

    @model_validator(mode="after")
    def _stream_names_unique(self) -> CampaignSpec:
        """A stream is known by its name: in routes, results, SLOs and priorities."""
        names = [s.name for s in self.streams]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"streams: names must be unique; repeated: {', '.join(repeated)}")
        return self

    @model_validator(mode="after")
    def _runnable(self) -> CampaignSpec:
        """The whole campaign within the time and message limits (each stage alone is)."""
        schedule = self.build_schedule()
        length = schedule.duration_s + self.drain_s
        if length > MAX_DURATION_S:
            raise ValueError(
                f"schedule and drain_s last {length:g} s, more than the limit of "
                f"{MAX_DURATION_S} s (7 days)"
            )
        if schedule.total > MAX_MESSAGES:
            raise ValueError(
                f"schedule: {schedule.total} messages planned, more than the limit of "
                f"{MAX_MESSAGES}"
            )
        return self

    def stream_specs(self) -> list[StreamSpec]:
        return [s.spec(self.unknown_recipients, self.unknown_addresses) for s in self.streams]

    def stream_plan(self) -> StreamPlan:
        """Which stream each message is in, and its priority (loadtest.campaign)."""
        return StreamPlan(self.stream_specs(), self.seed)

    def priority(self) -> Priority | None:
        """The streams' priorities as the sender's dispatcher takes them; None when they are
        all equal: the schedule's order, exactly as without the key."""
        plan = self.stream_plan()
        if not plan.prioritised:
            return None
        return Priority(of=plan.priority, highest=max(plan.priorities))

    def build_schedule(self) -> Schedule:
        return Schedule([s.stage() for s in self.schedule])
