"""The scenario's `dns:` section: the zones the run's DNS server is authoritative for.

The records are read by `maildrill.dns.zone` (its docstring has the shape, and the one-line
error naming the zone, name and record); this model only holds them, checks them as the
scenario is validated, and builds the zones. Whether a zone may be a real domain depends on
the scenario's top-level `allow_remote`, so that part is checked with the whole scenario
(`scenario_checks.dns_zones_reserved`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from loadtest.strict_model import StrictModel
from maildrill.dns.zone import Zone, parse_zones


class DnsSpec(StrictModel):
    zones: dict[str, Any] = Field(
        min_length=1,
        description="zone name to its records: `TYPE: value` at the apex, `NAME: {TYPE: "
        "value or [values], ttl}` below it (A, AAAA, MX, TXT, PTR, CNAME), `ttl` the zone's "
        "default; reserved names (.test, .example, example.com, 127.in-addr.arpa) unless "
        "allow_remote",
    )

    @model_validator(mode="after")
    def _records(self) -> DnsSpec:
        self.build(allow_remote=True)  # every record readable; the names' policy: later
        return self

    def build(self, *, allow_remote: bool) -> tuple[Zone, ...]:
        """The zones as served; ZoneError (a ValueError, one line) for bad data."""
        return parse_zones(self.zones, allow_remote=allow_remote)
