"""What `probe` gathers: plain data (JSON as is), decided on by `compare`.

Every lookup keeps its outcome as `maildrill.dns.resolver.Status` text (ok, nxdomain,
nodata, temperror), so a record that is missing is told from a server that did not answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DkimKey:
    """A selector a server signs with, and the public key it signs with when known."""

    selector: str
    domain: str  # d= of its signatures
    public_key: bytes | None = None  # DER SubjectPublicKeyInfo (RSA) or raw (Ed25519)

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


@dataclass(frozen=True)
class Sender:
    """A server that delivers the domain's mail to the providers."""

    name: str
    address: str  # the address it connects from (what SPF and PTR are checked for)
    helo_name: str  # what it says in EHLO ("" unknown)
    dkim: tuple[DkimKey, ...] = ()
    priority: int = 10  # the scenario's: lower is preferred (the primary)


@dataclass
class MxFacts:
    status: str
    records: list[tuple[int, str]] = field(default_factory=list)  # (preference, host)
    addresses: dict[str, list[str]] = field(default_factory=dict)  # host -> A and AAAA
    detail: str = ""


@dataclass
class SpfRecordFacts:
    """The domain's SPF record and the DNS lookups evaluating it all takes (RFC 7208
    4.6.4: include, a, mx, ptr, exists and redirect count; ip4, ip6 and all do not)."""

    status: str
    records: list[str] = field(default_factory=list)  # the v=spf1 TXT records
    lookups: int = 0  # over the whole tree, nested includes and redirects counted
    terms: list[str] = field(default_factory=list)  # each counted term, "domain: term"
    problem: str = ""  # a nested record missing, a loop: why the count may be short


@dataclass
class DmarcFacts:
    status: str
    records: list[str] = field(default_factory=list)  # the v=DMARC1 TXT records
    detail: str = ""
    domain: str = ""  # where they were found: the domain or its organizational domain


@dataclass
class DkimFacts:
    selector: str
    domain: str
    status: str  # of the TXT lookup at selector._domainkey.domain
    record: str = ""
    key_matches: bool | None = None  # None: the signing key is not known, or no key published
    problem: str = ""  # the record does not parse, or its key does not

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


@dataclass
class PtrFacts:
    status: str  # of the PTR lookup of the address
    names: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # PTR names that map back to the address
    helo_status: str = ""  # of the HELO name's forward lookup ("" without a HELO name)
    helo_addresses: list[str] = field(default_factory=list)


@dataclass
class SenderFacts:
    name: str
    address: str
    helo_name: str
    priority: int
    spf: str  # pyspf's result for the address: pass, fail, softfail, neutral, none, ...
    spf_explanation: str
    ptr: PtrFacts
    dkim: list[DkimFacts] = field(default_factory=list)


@dataclass
class DnsFacts:
    domain: str
    resolver: str  # host:port asked
    checked_at: float
    mx: MxFacts
    spf: SpfRecordFacts
    dmarc: DmarcFacts
    senders: list[SenderFacts]
    served: bool = False  # the scenario's zones, served for the check (else a resolver named)
