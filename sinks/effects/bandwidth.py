"""A thin link: bytes through the proxy at most `rate` per second, per connection."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from sinks.effects.base import Delay, Direction, Effect, Pace, Params

Way = Literal["upstream", "downstream", "both"]


def directions(way: Way) -> frozenset[Direction]:
    """`upstream` (client to server), `downstream` (server to client) or both."""
    if way == "both":
        return frozenset(Direction)
    return frozenset({Direction(way)})


class LinkParams(Params):
    direction: Way = Field(default="both", description="upstream, downstream or both")


class LinkEffect(Effect):
    """A proxy's effect on a connection's bytes, one way or both (Toxiproxy's streams)."""

    def __init__(self, params: LinkParams) -> None:
        super().__init__(params)
        self._directions = directions(params.direction)

    @property
    def directions(self) -> frozenset[Direction]:
        return self._directions


class BandwidthParams(LinkParams):
    rate: float = Field(gt=0, description="bytes per second, per connection and direction")


class Bandwidth(LinkEffect):
    kind = "bandwidth"
    Params = BandwidthParams
    summary = "at most `rate` bytes/s per connection in `direction` (upstream, downstream, both)"

    def __init__(self, params: BandwidthParams) -> None:
        super().__init__(params)
        self.rate = params.rate

    def shape(self, direction: Direction, size: int, rng: random.Random) -> Delay | Pace | None:
        return Pace(size / self.rate)
