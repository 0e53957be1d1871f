"""A scenario's `faults:` entries: what goes wrong on which server, when, for how long.

A fault's own parameters ride alongside its fields and are checked by its target's sink
(sinks.effects), or name an MTA fault maildrill carries out itself (MTA_KINDS); the
checks against the rest of the scenario are loadtest.scenario_checks.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from maildrill.numbers import CheckedModel, Seconds

# Faults that decide whether the listener answers at all: two at once contradict.
EXCLUSIVE_KINDS = frozenset({"down", "hang", "busy", "flap", "mta-stop", "mta-abort"})
# Faults of a Postfix instance under test, carried out by maildrill with `postfix -c DIR`.
MTA_KINDS = frozenset({"mta-stop", "mta-abort"})
# The target that names the run's DNS server (the scenario's `dns:`), not a server: its
# faults are maildrill.dns.faults' kinds, its journal faults-dns.csv.
DNS_TARGET = "dns"


class FaultEvent(CheckedModel):
    """A fault on a server at `at` seconds for `duration` seconds, with its own parameters."""

    model_config = ConfigDict(extra="allow")

    at: Seconds = Field(ge=0, description="seconds after the campaign start")
    target: str = Field(description="a local server, or `dns`: the run's DNS server")
    kind: str = Field(description="a fault or behaviour kind, below; its parameters go alongside")
    duration: Seconds | None = Field(default=None, gt=0, description="seconds; none: to the end")
    probability: float = Field(
        default=1.0, gt=0, le=1, description="share of decisions it applies to"
    )

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def body(self) -> dict[str, Any]:
        """What `maildrill run` posts to the target sink's control API to start it."""
        body = {"kind": self.kind, "probability": self.probability, **self.params}
        if self.duration is not None:
            body["duration"] = self.duration
        return body
