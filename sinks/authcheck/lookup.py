"""DNS lookups for the checks, sent only where the sink's config says (the run's server).

A lookup is `lookup(name, rtype) -> list[str]`: the records' data as text (TXT: the
strings joined; A/AAAA: the address; PTR, CNAME: the name without its final dot; MX:
"preference exchange"); an empty list when the name or the type does not exist
(NXDOMAIN, NODATA); TempDnsError when the server did not answer in time or answered
SERVFAIL or REFUSED: a temperror (RFC 7208 2.6.6, RFC 7489 6.6.3), never a "none".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype


class TempDnsError(Exception):
    """No answer to rely on: a timeout, SERVFAIL or REFUSED."""


class Lookup(Protocol):
    def __call__(self, name: str, rtype: str) -> list[str]: ...


def rdata_text(rtype: str, rdata: object) -> str:
    """One record's data as the checks read it (see the module's docstring)."""
    if rtype == "TXT":
        strings: Sequence[bytes] = rdata.strings  # type: ignore[attr-defined]
        return b"".join(strings).decode("utf-8", "replace")
    if rtype in ("A", "AAAA"):
        return str(rdata.address)  # type: ignore[attr-defined]
    if rtype in ("PTR", "CNAME"):
        return str(rdata.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    if rtype == "MX":
        exchange = rdata.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
        return f"{rdata.preference} {exchange}"  # type: ignore[attr-defined]
    return str(rdata)


class ServerLookup:
    """Asks one DNS server (host, port) over UDP, then TCP if the answer was truncated;
    nothing else: no /etc/resolv.conf, no recursion asked, no cache (each message sees
    the zone as it is when it arrives, so a drill can change it mid-run)."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def __call__(self, name: str, rtype: str) -> list[str]:
        query = dns.message.make_query(dns.name.from_text(name), rtype)
        query.flags &= ~dns.flags.RD
        try:
            response, _ = dns.query.udp_with_fallback(
                query, self.host, timeout=self.timeout, port=self.port
            )
        except (dns.exception.Timeout, OSError) as exc:
            raise TempDnsError(f"{name}/{rtype}: {type(exc).__name__}") from None
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode != dns.rcode.NOERROR:
            raise TempDnsError(f"{name}/{rtype}: {dns.rcode.to_text(rcode)}")
        wanted = dns.rdatatype.from_text(rtype)
        return [
            rdata_text(rtype, rdata)
            for rrset in response.answer
            if rrset.rdtype == wanted
            for rdata in rrset
        ]


class ZoneLookup:
    """An in-memory zone: {(name, rtype): [data, ...]}; names in `timeouts` time out.

    For the unit tests and the benchmark, which must not open sockets."""

    def __init__(
        self,
        records: Mapping[tuple[str, str], Sequence[str]] | None = None,
        timeouts: Sequence[str] = (),
    ) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        for (name, rtype), data in (records or {}).items():
            self.records[(name.lower().rstrip("."), rtype.upper())] = list(data)
        self.timeouts = {n.lower().rstrip(".") for n in timeouts}
        self.asked: list[tuple[str, str]] = []

    def add(self, name: str, rtype: str, data: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), rtype.upper()), []).append(data)

    def __call__(self, name: str, rtype: str) -> list[str]:
        key = (name.lower().rstrip("."), rtype.upper())
        self.asked.append(key)
        if key[0] in self.timeouts:
            raise TempDnsError(f"{name}/{rtype}: Timeout")
        return list(self.records.get(key, ()))
