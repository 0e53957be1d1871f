"""A long link: each chunk through the proxy arrives `ms` (+/- jitter) later.

A propagation delay, as Toxiproxy's latency: chunks are held, not spaced out, so a large
message is late by `ms` once, not once per chunk. The default direction, downstream,
delays what the server says, as a sink's own `latency` delays its replies.
"""

from __future__ import annotations

import random

from pydantic import Field

from maildrill.numbers import Millis
from sinks.effects.bandwidth import LinkEffect, LinkParams, Way
from sinks.effects.base import Delay, Direction, Pace


class LinkLatencyParams(LinkParams):
    ms: Millis = Field(ge=0, description="delay of each chunk, milliseconds")
    jitter_ms: Millis = Field(default=0.0, ge=0, description="uniform +/- jitter per chunk")
    direction: Way = Field(default="downstream", description="upstream, downstream or both")


class LinkLatency(LinkEffect):
    kind = "latency"
    Params = LinkLatencyParams
    summary = "each chunk `ms` +/- `jitter_ms` late in `direction` (default downstream)"

    def __init__(self, params: LinkLatencyParams) -> None:
        super().__init__(params)
        self.p = params

    def shape(self, direction: Direction, size: int, rng: random.Random) -> Delay | Pace | None:
        ms = self.p.ms
        if self.p.jitter_ms:
            ms += rng.uniform(-self.p.jitter_ms, self.p.jitter_ms)
        return Delay(max(0.0, ms) / 1000.0)
