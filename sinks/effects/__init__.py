"""Behaviours and faults by name. Add one: a module with one Effect subclass, listed here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.effects.base import (
    Action,
    Context,
    Decision,
    Delay,
    Effect,
    FaultHost,
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
from sinks.effects.reject import Reject
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
        Down,
        Hang,
        Drop,
        Busy,
        Flap,
    )
}


def build(kind: str, params: Mapping[str, Any]) -> Effect:
    """Validate `params` for `kind` and make the effect; errors name the kind and field."""
    cls = EFFECTS.get(kind)
    if cls is None:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(sorted(EFFECTS))}")
    return cls(cls.Params.model_validate(dict(params)))


__all__ = [
    "EFFECTS",
    "Action",
    "Context",
    "Decision",
    "Delay",
    "Effect",
    "FaultHost",
    "Params",
    "SessionInfo",
    "Stage",
    "build",
]
