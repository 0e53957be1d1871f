"""DNS faults: what the run's DNS server does instead of answering from its zones.

One small class per kind behind one interface (`DnsFault`), as the sinks' effects are:
a fault looks at one question (name and type) and either lets it pass (None) or decides
the answer instead: an rcode (`servfail`, `nxdomain`), no answer at all (`timeout`), an
answer held back (`latency`); or it serves record sets of its own (`records`: a
health-checked record switched to the secondary, the primary's MX dropped) through
`overlay`. Faults never touch sockets or clocks: when each is in force, and with what
probability, is decided once by the board that holds them (`maildrill.dns.board`).

Each kind's parameters are a pydantic model (`Params`): `names` (absolute names the
fault applies to; none: every name the server answers for) and `types` (record types;
none: every type) scope the answer faults; a `records` fault is scoped by its records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
from pydantic import ConfigDict, Field, field_validator, model_validator

from maildrill.dns.zone import RECORD_TYPES, Record, ZoneError, parse_rrsets
from maildrill.hostnames import ascii_domain
from maildrill.numbers import MILLIS_LIMIT, CheckedModel

MAX_SCOPE = 100  # names or types one fault lists


@dataclass(frozen=True, slots=True)
class Rcode:
    """Answer with this rcode and no records."""

    code: dns.rcode.Rcode


@dataclass(frozen=True, slots=True)
class Silence:
    """Send nothing back: the client's own timeout is the answer."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Answer as decided, this many seconds later."""

    seconds: float


Decision = Rcode | Silence | Hold

# (absolute name, type) -> the records served instead; an empty rdataset: the set is gone.
Overlay = Mapping[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset]


class FaultParams(CheckedModel):
    """Every DNS fault's scope: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...] = Field(
        default=(), max_length=MAX_SCOPE, description="absolute names; none: all names"
    )
    types: tuple[str, ...] = Field(
        default=(), max_length=MAX_SCOPE, description="record types (A, MX, ...); none: all"
    )

    @field_validator("names")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(ascii_domain(n.removesuffix(".")) for n in names)

    @field_validator("types")
    @classmethod
    def _types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(t.upper() for t in types)
        unknown = [t for t in upper if t not in (*RECORD_TYPES, "SOA", "NS", "ANY")]
        if unknown:
            raise ValueError(f"not record types: {', '.join(unknown)}")
        return upper


class DnsFault:
    """A DNS fault. Subclasses set `kind`, `Params` and `summary`, and override `decide`
    (an answer fault) or `overlay` (record sets of its own)."""

    kind: ClassVar[str]
    Params: ClassVar[type[FaultParams]] = FaultParams
    summary: ClassVar[str] = ""

    def __init__(self, params: FaultParams) -> None:
        self.params = params
        self._names = frozenset(dns.name.from_text(n) for n in params.names)
        self._types = frozenset(dns.rdatatype.from_text(t) for t in params.types)

    def applies(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether the question is in this fault's scope (names and types)."""
        return (not self._names or name in self._names) and (
            not self._types or rdtype in self._types
        )

    def decide(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Decision | None:
        return None

    def overlay(self) -> Overlay:
        return {}


class ServFail(DnsFault):
    kind = "servfail"
    summary = "answer SERVFAIL (a resolver's temporary failure: a sender defers)"

    def decide(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Decision | None:
        return Rcode(dns.rcode.SERVFAIL)


class NxDomain(DnsFault):
    kind = "nxdomain"
    summary = "answer NXDOMAIN: the name does not exist (a sender bounces)"

    def decide(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Decision | None:
        return Rcode(dns.rcode.NXDOMAIN)


class Timeout(DnsFault):
    kind = "timeout"
    summary = "no answer at all: the client's query times out"

    def decide(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Decision | None:
        return Silence()


class LatencyParams(FaultParams):
    ms: Annotated[float, MILLIS_LIMIT] = Field(
        gt=0, description="milliseconds each answer is held back"
    )


class Latency(DnsFault):
    kind = "latency"
    Params = LatencyParams
    summary = "answer `ms` milliseconds late (UDP and TCP)"

    def decide(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Decision | None:
        assert isinstance(self.params, LatencyParams)
        return Hold(self.params.ms / 1000.0)


class RecordsParams(FaultParams):
    records: dict[str, Any] = Field(
        min_length=1,
        max_length=MAX_SCOPE,
        description="absolute name to its new record sets, as under a zone's name, `ttl` "
        "required: `{smtp.shop.test: {A: 127.0.0.12, ttl: 5}}`; `TYPE: []` takes a set away",
    )

    @model_validator(mode="after")
    def _records(self) -> RecordsParams:
        if self.names or self.types:
            raise ValueError("records: scoped by its records; names and types do not apply")
        self.rrsets()  # every record readable
        return self

    def rrsets(self) -> dict[tuple[str, str], tuple[Record, ...]]:
        sets: dict[tuple[str, str], tuple[Record, ...]] = {}
        for key, types in self.records.items():
            try:
                sets.update(parse_rrsets(key, types, "records"))
            except ZoneError as exc:
                raise ValueError(str(exc)) from None
        return sets


class Records(DnsFault):
    kind = "records"
    Params = RecordsParams
    summary = (
        "serve `records` instead of the zone's sets: `{NAME: {TYPE: values, ttl: N}}`, "
        "`TYPE: []` takes a set away (NODATA)"
    )

    def __init__(self, params: FaultParams) -> None:
        super().__init__(params)
        assert isinstance(params, RecordsParams)
        self._overlay: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset]
        self._overlay = {}
        ttl = {str(k).removesuffix(".").lower(): v["ttl"] for k, v in params.records.items()}
        for (name, rtype), records in params.rrsets().items():
            rdtype = dns.rdatatype.from_text(rtype)
            rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
            for record in records:
                rdataset.add(record.rdata, record.ttl)
            rdataset.ttl = ttl[name]
            self._overlay[(dns.name.from_text(name), rdtype)] = rdataset

    def applies(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        return (name, rdtype) in self._overlay

    def overlay(self) -> Overlay:
        return self._overlay

    def names(self) -> tuple[str, ...]:
        """The names whose records it replaces (the scenario checks they are served)."""
        return tuple(sorted({n.to_text(omit_final_dot=True) for n, _ in self._overlay}))

    def addresses(self) -> tuple[tuple[str, str, str], ...]:
        """Each A and AAAA record it serves as (name, type, address): where a sender that
        follows the switch sends next (the scenario checks they are on loopback)."""
        found = set()
        for (name, rdtype), rdataset in self._overlay.items():
            if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                text = name.to_text(omit_final_dot=True)
                found |= {(text, rdtype.name, str(rdata.address)) for rdata in rdataset}
        return tuple(sorted(found))


KINDS: Mapping[str, type[DnsFault]] = {
    cls.kind: cls for cls in (ServFail, Timeout, NxDomain, Latency, Records)
}


def build(kind: str, params: Mapping[str, Any]) -> DnsFault:
    """Validate `params` for `kind` and make the fault; ValueError (pydantic's
    ValidationError, or one line) naming the kind and field."""
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown DNS fault kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return cls(cls.Params.model_validate(dict(params)))
