"""A proxy's hang: a black-holed path to the server (or a server that stopped answering).

`scope: all` (the default) freezes the link both ways: bytes a client or the server sends
on an open connection are held, not passed on, and a new connection is held before the
proxy reaches the upstream (no banner). When the fault clears, what was held goes on, as
a path that comes back delivers what TCP kept retransmitting; a connection whose client
gave up meanwhile is cut instead and what it had sent is dropped (sinks.proxy.Link): a
sender that timed out has given the message up, and a final dot delivered after that would
be a receipt it never heard of.

`scope: new` is the proxy's hang before this existed: a new connection is accepted and
never relayed (not after the clear either), open connections keep flowing.
"""

from __future__ import annotations

import random

from pydantic import Field

from sinks.effects.base import (
    Action,
    Context,
    Decision,
    Delay,
    Direction,
    Effect,
    Pace,
    Params,
    Stage,
)
from sinks.effects.hang import Scope


class LinkHangParams(Params):
    scope: Scope = Field(
        default="all",
        description="all: open connections freeze both ways too; new: new connections only",
    )


class LinkHang(Effect):
    kind = "hang"
    Params = LinkHangParams
    summary = "relay nothing either way, reach no upstream (`scope: new`: new connections only)"

    def __init__(self, params: LinkHangParams) -> None:
        super().__init__(params)
        self.scope = params.scope

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset({Stage.CONNECT})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return Action.HANG if self.scope == "new" else Action.FREEZE

    @property
    def directions(self) -> frozenset[Direction]:
        return frozenset() if self.scope == "new" else frozenset(Direction)

    def shape(
        self, direction: Direction, size: int, rng: random.Random
    ) -> Delay | Pace | Action | None:
        return Action.FREEZE
