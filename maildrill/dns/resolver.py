"""Lookups against one named DNS server (the run's, or one the user names): typed answers.

Never the system's resolver: every query goes to the `host:port` given, so nothing the run
does depends on /etc/resolv.conf or reaches a real domain by accident. UDP first, TCP when
the answer comes back truncated (TC); a CNAME in the answer is followed (at most
`MAX_CNAME_HOPS`, asking again when the chain leaves the answer).

A `Lookup` says which of the outcomes the mail checks must tell apart (RFC 7208 section
5, RFC 6376 section 6.1.2, RFC 7489 section 6.6.3):
- `Status.OK`: records (`records`, each in its text form, below);
- `Status.NXDOMAIN`: the name does not exist;
- `Status.NODATA`: the name exists, without records of that type;
- `Status.TEMPERROR`: no usable answer (a timeout, SERVFAIL, REFUSED, a reply that does
  not parse): `detail` says which. SPF's and DKIM's temperror.

Records' text: A and AAAA the address; MX `PREFERENCE HOST` (`Lookup.mx()` parses them);
TXT the record's strings joined (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2), decoded
as UTF-8; PTR and CNAME the host name; names lower case without the trailing dot.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT

MAX_CNAME_HOPS = 8
DEFAULT_TIMEOUT_S = 2.0


class Status(enum.StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TEMPERROR = "temperror"


@dataclass(frozen=True)
class MxRecord:
    preference: int
    host: str  # "" for a null MX (RFC 7505)


@dataclass(frozen=True)
class Lookup:
    """The outcome of one lookup: `name` as asked (lower case, no trailing dot), `rtype`
    (A, AAAA, MX, TXT, PTR, CNAME), the `status`, the records' text, their TTL (None
    without records), and `detail` (the rcode or 'timeout' for a temperror; for a name
    that is not a DNS name, never asked, an NXDOMAIN saying so; else '')."""

    name: str
    rtype: str
    status: Status
    records: tuple[str, ...] = ()
    ttl: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def mx(self) -> tuple[MxRecord, ...]:
        """The MX records, lowest preference first (an MX lookup's records)."""
        out = []
        for text in self.records:
            preference, _, host = text.partition(" ")
            out.append(MxRecord(int(preference), host))
        return tuple(sorted(out, key=lambda m: (m.preference, m.host)))


class Resolver:
    """Asks one DNS server; `lookup` blocks (asyncio code runs it in a thread: the checks
    that ask are few and short, and one code path is one set of answers to trust)."""

    def __init__(self, host: str, port: int = 53, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def lookup(self, name: str, rtype: str) -> Lookup:
        try:
            asked = _name(name)
        except dns.exception.DNSException as exc:  # `a..b`, a label over 63 octets: no query
            return Lookup(name.lower().rstrip("."), rtype, Status.NXDOMAIN,
                          detail=f"not a DNS name ({type(exc).__name__})")  # fmt: skip
        qname = asked
        chain_ttl: int | None = None
        for _ in range(MAX_CNAME_HOPS):
            try:
                response = self._exchange(qname, rtype)
            except (dns.exception.Timeout, TimeoutError):
                return _temperror(asked, rtype, "timeout")
            except (OSError, dns.exception.DNSException) as exc:
                return _temperror(asked, rtype, type(exc).__name__)
            outcome, qname, chain_ttl = _read(response, asked, qname, rtype, chain_ttl)
            if outcome is not None:
                return outcome
        return _temperror(asked, rtype, "CNAME chain too long")

    # The lookups the mail checks make, by name.
    def a(self, name: str) -> Lookup:
        return self.lookup(name, "A")

    def aaaa(self, name: str) -> Lookup:
        return self.lookup(name, "AAAA")

    def mx(self, name: str) -> Lookup:
        return self.lookup(name, "MX")

    def txt(self, name: str) -> Lookup:
        return self.lookup(name, "TXT")

    def ptr(self, address: str) -> Lookup:
        """The PTR of an address (its in-addr.arpa or ip6.arpa name is asked)."""
        return self.lookup(ipaddress.ip_address(address).reverse_pointer, "PTR")

    def _query(self, qname: dns.name.Name, rtype: str) -> dns.message.Message:
        return dns.message.make_query(qname, dns.rdatatype.from_text(rtype), use_edns=0)

    def _exchange(self, qname: dns.name.Name, rtype: str) -> dns.message.Message:
        query = self._query(qname, rtype)
        response = dns.query.udp(query, self.host, self.timeout, self.port, ignore_trailing=True)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, self.host, self.timeout, self.port)
        return response


def _read(
    response: dns.message.Message,
    asked: dns.name.Name,
    qname: dns.name.Name,
    rtype: str,
    chain_ttl: int | None,
) -> tuple[Lookup | None, dns.name.Name, int | None]:
    """The lookup's outcome from one response, or (None, the CNAME target to ask next)."""
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Lookup(_text(asked), rtype, Status.NXDOMAIN), qname, chain_ttl
    if rcode != dns.rcode.NOERROR:
        return _temperror(asked, rtype, dns.rcode.to_text(rcode)), qname, chain_ttl
    rdtype = dns.rdatatype.from_text(rtype)
    for _ in range(MAX_CNAME_HOPS):
        wanted = response.get_rrset(response.answer, qname, dns.rdataclass.IN, rdtype)
        if wanted is not None:
            ttl = wanted.ttl if chain_ttl is None else min(wanted.ttl, chain_ttl)
            records = tuple(sorted(_record_text(r) for r in wanted))
            return Lookup(_text(asked), rtype, Status.OK, records, ttl), qname, chain_ttl
        cname = response.get_rrset(response.answer, qname, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            return Lookup(_text(asked), rtype, Status.NODATA), qname, chain_ttl
        chain_ttl = cname.ttl if chain_ttl is None else min(cname.ttl, chain_ttl)
        qname = next(iter(cname)).target
        if response.get_rrset(response.answer, qname, dns.rdataclass.IN, rdtype) is None and (
            response.get_rrset(response.answer, qname, dns.rdataclass.IN, dns.rdatatype.CNAME)
            is None
        ):
            return None, qname, chain_ttl  # the chain leaves this answer: ask for the target
    return _temperror(asked, rtype, "CNAME chain too long"), qname, chain_ttl


def _record_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        return f"{rdata.preference} {_text(rdata.exchange)}"
    target = getattr(rdata, "target", None)
    if isinstance(target, dns.name.Name):
        return _text(target)
    return rdata.to_text()


def _name(name: str) -> dns.name.Name:
    return dns.name.from_text(name, origin=dns.name.root)


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower() if name != dns.name.root else ""


def _temperror(asked: dns.name.Name, rtype: str, detail: str) -> Lookup:
    return Lookup(_text(asked), rtype, Status.TEMPERROR, detail=detail)
