"""A fault's window as both fault hosts keep it: a sink's or proxy's effect host
(`sinks.host.ActiveEffect`) and the run's DNS server (`maildrill.dns.board.ActiveDnsFault`).

Both hosts decide "in force now?" the same way and describe a fault in the same JSON (the
control API's: id, kind, origin, probability, params, state, start_at, started, until,
ended), so the orchestrator follows DNS faults with the client it follows sink faults
with. That shared part lives here, in the neutral package both may import; each host's
dataclass keeps its own fields (the effect or fault object, its timer) and inherits these.
"""

from __future__ import annotations

from typing import Any


class FaultWindow:
    """`in_force` and `describe` over the fields a host's fault record declares."""

    id: str
    kind: str
    origin: str  # behaviour (steady), schedule, command
    probability: float
    params: dict[str, Any]
    state: str  # pending, active, then ended, cancelled or failed: WHY
    opens: float  # epoch: the planned start (start_at), or when a live command came
    onset: float | None  # when the host first acted with it in force (its start row)
    until: float | None
    ended: float | None

    def in_force(self, now: float) -> bool:
        return self.opens <= now and (self.until is None or now < self.until)

    def describe(self) -> dict[str, Any]:
        def at(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "id": self.id,
            "kind": self.kind,
            "origin": self.origin,
            "probability": self.probability,
            "params": self.params,
            "state": self.state,
            "start_at": at(self.opens),
            "started": at(self.onset),
            "until": at(self.until),
            "ended": at(self.ended),
        }
