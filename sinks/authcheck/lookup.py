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

from maildrill.dns.resolver import Resolver, Status


class TempDnsError(Exception):
    """No answer to rely on: a timeout, SERVFAIL or REFUSED."""


class Lookup(Protocol):
    def __call__(self, name: str, rtype: str) -> list[str]: ...


class ServerLookup:
    """Asks one DNS server (host, port) through maildrill.dns.resolver, the client the
    run's other checks use, so both read the zone the same way: UDP, then TCP if the answer
    was truncated, a CNAME followed; nothing else (no /etc/resolv.conf, no cache: each
    message sees the zone as it is when it arrives, so a drill can change it mid-run)."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.resolver = Resolver(host, port, timeout=timeout)

    def __call__(self, name: str, rtype: str) -> list[str]:
        found = self.resolver.lookup(name, rtype)
        if found.status is Status.TEMPERROR:
            raise TempDnsError(f"{name}/{rtype}: {found.detail}")
        return list(found.records)


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
