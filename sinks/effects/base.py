"""The one interface every behaviour and fault implements.

An effect looks at one SMTP stage of one session and either lets it pass (None) or
returns a decision: a reply to send instead, a delay, or a socket action (hang, freeze,
drop, reset). A proxy (`sinks.proxy`) asks the same questions of the SMTP session it follows, and
asks link effects (`shape`) how each chunk it relays is slowed. Effects never touch sockets
or clocks of their own; probability and time windows are applied once, by the sink or proxy
that holds them (as Toxiproxy applies toxicity in its wrapper).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from pydantic import ConfigDict

from maildrill.numbers import CheckedModel
from sinks.replies import Reply


class Stage(enum.Enum):
    CONNECT = "connect"
    EHLO = "ehlo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DOT = "dot"  # end of data: the message is in, the final reply is due
    # The message is journaled as received, the 250 not yet sent: a delay or a failure here
    # is a receiver that committed the mail but was slow or wrong to say so, and the
    # sender's retry makes a duplicate (how an MTA stopped mid-delivery duplicates).
    ACK = "ack"
    # Any reply about to be sent, whatever the command: the banner, EHLO, MAIL, RCPT, DATA,
    # the dot, and RSET, NOOP, QUIT, AUTH, STARTTLS, a syntax error. A sink asks it of every
    # reply it sends (after the command did its work: at the dot, after the commit).
    REPLY = "reply"

    # A sink asks which effects are in force at a stage (`by_stage[stage]`) nine times a
    # message; Enum's own hash is a Python method (of the name). A member is equal only to
    # itself, so the identity hash is as good and costs no call.
    __hash__ = object.__hash__


class Action(enum.Enum):
    HANG = "hang"  # never answer again on this connection
    # Answer nothing while the effect is in force. Never returned to the one who asks: its
    # host (sinks.host.EffectHost.decide) holds the stage until the effects in force change,
    # then asks again, so the reply (or the commit, at the dot) waits out the freeze.
    FREEZE = "freeze"
    DROP = "drop"  # close the connection without a reply (after journaling the message)
    RESET = "reset"  # abort the connection with a TCP RST (a proxy's fault)


class Direction(enum.Enum):
    """Which way bytes go through a proxy (Toxiproxy's streams)."""

    UPSTREAM = "upstream"  # client to server
    DOWNSTREAM = "downstream"  # server to client


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float


@dataclass(frozen=True, slots=True)
class Pace:
    """The link is busy this long carrying one chunk (bandwidth), unlike a Delay, which
    holds each chunk for a time but lets the next one follow right behind it."""

    seconds: float


Decision = Reply | Delay | Action


@dataclass(slots=True)
class SessionInfo:
    """What effects may know about one SMTP connection."""

    id: str
    peer_ip: str
    messages: int = 0  # messages accepted (or dropped) on this connection so far
    helo: str = ""  # the EHLO/HELO name, cleaned for the journal (see sinks.handler)
    held_by: str = ""  # the kind of effect whose FREEZE holds this session now ("" if none)


@dataclass(slots=True)
class Context:
    """One stage of one session, as effects see it."""

    session: SessionInfo
    active_sessions: int
    now: float  # time.monotonic()
    rng: random.Random
    mail_from: str = ""
    recipients: list[str] = field(default_factory=list)
    address: str = ""  # the address of the current MAIL or RCPT command
    size: int = 0  # message size at DOT


class Params(CheckedModel):
    """Base of every effect's parameter model: unknown keys, infinite and huge numbers are
    errors (maildrill.numbers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The base parameters under a second name: inside Effect, `Params` is the class attribute.
BaseParams = Params


class FaultHost(Protocol):
    """What a listener-level fault (down, flap) may do to its sink."""

    async def close_listener(self) -> None: ...

    async def open_listener(self) -> None: ...

    def record(self, kind: str, state: str, params: dict[str, object]) -> None: ...


class Effect:
    """A behaviour or fault. Subclasses set `kind` and `Params` and override what they need."""

    kind: ClassVar[str]
    Params: ClassVar[type[BaseParams]] = BaseParams
    summary: ClassVar[str] = ""

    def __init__(self, params: BaseParams) -> None:
        self.params = params
        self.until: float | None = None  # epoch seconds a timed fault ends (set by its host)

    @property
    def stages(self) -> frozenset[Stage]:
        """The stages `decide` wants to see; empty for listener-level faults."""
        return frozenset()

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return None

    @property
    def directions(self) -> frozenset[Direction]:
        """The directions `shape` wants to see (a proxy's link effects); empty for the rest."""
        return frozenset()

    def shape(
        self, direction: Direction, size: int, rng: random.Random
    ) -> Delay | Pace | Action | None:
        """How a chunk of `size` bytes going `direction` through a proxy is slowed
        (Action.FREEZE: held until the effects in force change)."""
        return None

    async def start(self, host: FaultHost) -> None:
        """Called when the effect becomes active (listener-level faults act here)."""

    async def stop(self, host: FaultHost) -> None:
        """Called when the effect is cleared."""
