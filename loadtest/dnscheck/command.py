"""`maildrill check --dns DOMAIN`, from the command line's words to facts and findings.

By default the scenario's own zones are served for the check as `maildrill run` serves
them (maildrill.dns on 127.0.0.1, a free port, authoritative for those zones only) and
stopped after; `--resolver HOST:PORT` asks another server instead, on loopback unless the
scenario says `allow_remote: true`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from loadtest.dnscheck import probe
from loadtest.dnscheck.compare import Comparison, compare
from loadtest.dnscheck.facts import DnsFacts, Sender
from loadtest.dnscheck.run_keys import with_txt
from loadtest.scenario import Scenario
from maildrill.dns.resolver import Resolver
from maildrill.dns.server import Authority, DnsServer
from maildrill.hostnames import ascii_domain
from maildrill.netaddr import is_loopback


class CheckInputError(ValueError):
    """Input the check cannot use; the message is one line, for the user."""


def parse_domain(text: str) -> str:
    try:
        return ascii_domain(text.rstrip(".") if text != "." else text)
    except ValueError as exc:
        raise CheckInputError(f"--dns {text!r}: {exc}") from None


def parse_resolver(text: str, *, allow_remote: bool) -> tuple[str, int]:
    """'HOST:PORT' ('[::1]:53' for IPv6), on loopback unless the scenario allows remote."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CheckInputError(f"--resolver {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5353")
    if not allow_remote and not is_loopback(host):
        raise CheckInputError(
            f"--resolver {text!r}: {host} is outside loopback; a scenario with "
            "allow_remote: true may name such a resolver"
        )
    return host, int(port)


def served_zones(
    scenario: Scenario | None, domain: str, txt: Mapping[str, str] | None = None
) -> Authority:
    """The scenario's zones, which must hold DOMAIN, as the run's DNS server answers them
    (`txt`: the records a run adds, its DKIM keys: see run_keys)."""
    if scenario is None or scenario.dns is None:
        raise CheckInputError(
            "check --dns: the scenario has no dns: zones to serve; give --resolver HOST:PORT"
        )
    zones = scenario.dns.build(allow_remote=scenario.allow_remote)
    origins = [z.origin for z in zones]
    if not any(domain == o or domain.endswith(f".{o}") for o in origins):
        raise CheckInputError(f"--dns {domain}: not in the scenario's zones ({', '.join(origins)})")
    return Authority(z.to_dns() for z in with_txt(zones, txt or {}))


def check(
    domain: str,
    senders: Sequence[Sender],
    *,
    resolver: tuple[str, int] | None,
    authority: Authority | None,
    timeout_s: float,
) -> tuple[DnsFacts, Comparison]:
    """Gather and compare, asking `resolver`, or a server started here for `authority`."""
    if resolver is not None:
        facts = probe.gather(Resolver(*resolver, timeout=timeout_s), domain, senders)
    else:
        assert authority is not None
        facts = asyncio.run(_served(authority, domain, senders, timeout_s))
    return facts, compare(facts)


async def _served(
    authority: Authority, domain: str, senders: Sequence[Sender], timeout_s: float
) -> DnsFacts:
    """The probe (blocking) in a thread, while this loop serves the zones."""
    async with DnsServer(authority) as server:
        host, port = server.address
        resolver = Resolver(host, port, timeout=timeout_s)
        facts = await asyncio.to_thread(probe.gather, resolver, domain, senders)
    facts.served = True
    return facts
