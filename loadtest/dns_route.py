"""Where a server named by DNS is, asked as mail is sent: the edge of the sender.

The routing and retry policies stay pure: they pick a server by name. When the sender
opens a connection to a server whose host is a name (`Server.resolve`), it asks here: the
A record through the run's DNS server, or the scenario's named `resolver:` (never the
system's resolver), kept for its TTL by the process's `AnswerCache`. The answer decides
the attempt as Postfix's DNS failures do:

- an address: connect to it (the first of the set), loopback only unless allow_remote;
- a temporary failure (SERVFAIL, timeout): the message is deferred, tried again later;
- no such host (NXDOMAIN, no A record): this server fails, routing moves on;
- a server made from an MX set whose host the set no longer holds: the same;
- an address outside loopback without allow_remote: refused, never sent to.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass

from loadtest.dns_cache import Answer, AnswerCache
from maildrill.dns.resolver import Resolver, Status
from maildrill.netaddr import is_loopback


class Verdict(enum.StrEnum):
    ADDRESS = "address"  # connect to `addr`
    TEMPORARY = "temporary"  # SERVFAIL, timeout: defer the message
    NO_HOST = "no_host"  # NXDOMAIN, NODATA: this server fails
    OUTSIDE = "outside"  # an address outside loopback without allow_remote


@dataclass(frozen=True, slots=True)
class Resolution:
    """One answer as the attempt journals it: the name asked, the address used (or the one
    refused), the answer's TTL and when it was received (None on failure), the detail."""

    verdict: Verdict
    name: str
    addr: str = ""
    ttl: int | None = None
    at: float | None = None
    detail: str = ""


class HostResolver:
    """The process's lookups of server names: one resolver, one cache."""

    def __init__(
        self, resolver: Resolver, cache: AnswerCache | None = None, allow_remote: bool = False
    ) -> None:
        self.resolver = resolver
        self.cache = AnswerCache() if cache is None else cache
        self.allow_remote = allow_remote

    def _asked(self, name: str, rtype: str) -> Answer:
        """The cached answer to (name, rtype), or the DNS server's, kept for its TTL."""
        answer = self.cache.get(name, rtype)
        if answer is None:
            answer = self.cache.put(self.resolver.lookup(name, rtype), time.time())
        return answer

    def still_mx(self, domain: str, host: str) -> Resolution | None:
        """None while `host` is an MX host of `domain` (its MX set asked as the A records
        are, kept for its TTL); else why not, as a lookup decides an attempt: the MX set
        not to be had for now defers, a set without the host fails this server (a `records`
        fault that drops the primary's MX: the senders move on, as MTAs do once the
        record they cached expires). Hosts added to the set are not new servers."""
        name = domain.lower().rstrip(".")
        answer = self._asked(name, "MX")
        lookup = answer.lookup
        if lookup.status is Status.TEMPERROR:
            return Resolution(Verdict.TEMPORARY, name, detail=lookup.detail)
        hosts = {mx.host.lower().rstrip(".") for mx in lookup.mx()} if lookup.ok else set()
        if host.lower().rstrip(".") in hosts:
            return None
        return Resolution(Verdict.NO_HOST, name, "", lookup.ttl, answer.at, "not_in_mx")

    def resolve(self, host: str) -> Resolution:
        name = host.lower().rstrip(".")
        answer = self._asked(name, "A")
        lookup = answer.lookup
        if lookup.status is Status.TEMPERROR:
            return Resolution(Verdict.TEMPORARY, name, detail=lookup.detail)
        if not lookup.ok or not lookup.records:
            return Resolution(Verdict.NO_HOST, name, detail=lookup.status.value)
        addr = lookup.records[0]
        if not self.allow_remote and not is_loopback(addr):
            return Resolution(Verdict.OUTSIDE, name, addr, lookup.ttl, answer.at, "outside")
        return Resolution(Verdict.ADDRESS, name, addr, lookup.ttl, answer.at)


@dataclass(frozen=True, slots=True)
class Located:
    """Servers named by DNS as found at one moment: server -> (address, port), and each one
    without an address it may use -> why (one line naming the resolver asked)."""

    found: dict[str, tuple[str, int]]
    missing: dict[str, str]


def locate(named: Mapping[str, tuple[str, int]], resolver: Resolver, allow_remote: bool) -> Located:
    """Where each server named by DNS (`named`: server -> (its host name, port)) is at this
    moment, for what checks a server once rather than sending to it (the pre-flight check,
    the health prober): looked up once through the resolver the senders ask (the run's DNS
    server, or the scenario's `resolver:`). A name without an address it may use is in
    `missing` with the reason, so the check says so; its name is never handed to the
    system's resolver."""
    hosts = HostResolver(resolver, allow_remote=allow_remote)
    where = (
        f"[{resolver.host}]:{resolver.port}"
        if ":" in resolver.host
        else (f"{resolver.host}:{resolver.port}")
    )
    found, missing = {}, {}
    for server, (host, port) in named.items():
        answer = hosts.resolve(host)
        if answer.verdict is Verdict.ADDRESS:
            found[server] = (answer.addr, port)
        else:
            missing[server] = (
                f"{server}: resolver {where} gave no address for {host}: {_why(answer)}"
            )
    return Located(found, missing)


def _why(answer: Resolution) -> str:
    if answer.verdict is Verdict.TEMPORARY:
        return f"no answer ({answer.detail})"
    if answer.verdict is Verdict.OUTSIDE:
        return f"{answer.addr} is outside loopback (allow_remote is not set)"
    return {"nxdomain": "no such name", "nodata": "no A record"}.get(answer.detail, answer.detail)
