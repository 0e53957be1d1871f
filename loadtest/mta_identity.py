"""Who each Postfix instance is when it delivers: the address it connects from and the name
it gives in EHLO, so a downstream sink's receipts (peer, helo) and the checks a provider
makes (SPF on the address, PTR and forward-confirmed DNS against the name) tell the
primary's deliveries from the secondary's.

Defaults are distinct per instance: 127.0.0.11 for the first `postfix:` server of the
scenario, .12 for the next, ... (an address the scenario gives itself is skipped), and the
EHLO name is the instance's hostname (NAME.maildrill.test unless `hostname` says). Linux
routes all of 127.0.0.0/8 to the loopback interface, so any of them can be bound without
set-up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from loadtest.server_spec import ServerSpec

FIRST_SOURCE = ipaddress.IPv4Address("127.0.0.11")
LAST_SOURCE = ipaddress.IPv4Address("127.255.255.254")


@dataclass(frozen=True)
class Identity:
    hostname: str  # myhostname
    source_address: str  # smtp_bind_address
    helo_name: str  # smtp_helo_name


def default_hostname(server: str) -> str:
    return f"{server}.maildrill.test"


def identities(servers: Sequence[ServerSpec]) -> dict[str, Identity]:
    """Each `postfix:` server's identity, in scenario order; defaults filled in."""
    mtas = [s for s in servers if s.postfix is not None]
    taken = {s.postfix.source_address for s in mtas if s.postfix and s.postfix.source_address}
    free = (str(a) for a in _addresses_from(FIRST_SOURCE) if str(a) not in taken)
    found = {}
    for server in mtas:
        spec = server.postfix
        assert spec is not None
        hostname = spec.hostname or default_hostname(server.name)
        found[server.name] = Identity(
            hostname=hostname,
            source_address=spec.source_address or next(free),
            helo_name=spec.helo_name or hostname,
        )
    return found


def shared_source(servers: Sequence[ServerSpec]) -> tuple[str, str, str] | None:
    """(address, first server, second server) when two instances are given one source
    address: their deliveries could not be told apart downstream."""
    seen: dict[str, str] = {}
    for server in servers:
        address = server.postfix.source_address if server.postfix else None
        if address is None:
            continue
        if address in seen:
            return address, seen[address], server.name
        seen[address] = server.name
    return None


def _addresses_from(first: ipaddress.IPv4Address) -> Iterator[ipaddress.IPv4Address]:
    address = first
    while address <= LAST_SOURCE:
        yield address
        address += 1
