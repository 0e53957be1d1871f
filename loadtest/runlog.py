"""What a drill tells as it goes: events for harness.json, lines for the person watching;
and SetupError, the one-line reason a drill could not start."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


class SetupError(RuntimeError):
    """The drill could not start; the message says why in one line."""


@dataclass
class RunLog:
    """The harness record's `events` (epoch time, name, details) and the console lines."""

    out: TextIO = sys.stderr
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, event: str, /, **detail: Any) -> None:
        self.events.append({"time": round(time.time(), 6), "event": event, **detail})

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]
