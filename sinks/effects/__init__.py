"""Behaviours and faults by name. Add one: a module with one Effect subclass, listed here
(the steps: docs/architecture.md, "How to add a fault").

A sink knows EFFECTS; a proxy (`mode: proxy`) knows PROXY_EFFECTS: the faults that make
sense from outside a server it relays to: some shared with sinks (down, busy, drop, flap,
connection_cap), some named as a sink's but acting on the link, in classes of their own
(hang, latency), and some its own (reset, bandwidth).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.effects.bandwidth import Bandwidth
from sinks.effects.base import (
    Action,
    Context,
    Decision,
    Delay,
    Direction,
    Effect,
    FaultHost,
    Pace,
    Params,
    SessionInfo,
    Stage,
)
from sinks.effects.busy import Busy
from sinks.effects.caps import ConnectionCap, MessageCap, RecipientCap
from sinks.effects.down import Down
from sinks.effects.drop import Drop
from sinks.effects.flap import Flap
from sinks.effects.greylist import Greylist
from sinks.effects.hang import Hang
from sinks.effects.latency import Latency
from sinks.effects.link_hang import LinkHang
from sinks.effects.link_latency import LinkLatency
from sinks.effects.mailboxes import Mailboxes
from sinks.effects.reject import Reject
from sinks.effects.reset import Reset
from sinks.effects.throttle import Throttle

EFFECTS: Mapping[str, type[Effect]] = {
    cls.kind: cls
    for cls in (
        Throttle,
        ConnectionCap,
        MessageCap,
        RecipientCap,
        Greylist,
        Latency,
        Reject,
        Mailboxes,
        Down,
        Hang,
        Drop,
        Busy,
        Flap,
    )
}

PROXY_EFFECTS: Mapping[str, type[Effect]] = {
    cls.kind: cls
    for cls in (Down, LinkHang, Busy, Drop, Reset, LinkLatency, Bandwidth, Flap, ConnectionCap)
}


def kinds_for(mode: str) -> Mapping[str, type[Effect]]:
    """The kinds a sink of this `mode` (sink, backup-mx, proxy) knows."""
    return PROXY_EFFECTS if mode == "proxy" else EFFECTS


def build(
    kind: str, params: Mapping[str, Any], kinds: Mapping[str, type[Effect]] = EFFECTS
) -> Effect:
    """Validate `params` for `kind` and make the effect; errors name the kind and field."""
    cls = kinds.get(kind)
    if cls is None:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return cls(cls.Params.model_validate(dict(params)))


__all__ = [
    "EFFECTS",
    "PROXY_EFFECTS",
    "Action",
    "Context",
    "Decision",
    "Delay",
    "Direction",
    "Effect",
    "FaultHost",
    "Pace",
    "Params",
    "SessionInfo",
    "Stage",
    "build",
    "kinds_for",
]
