"""Servers named by DNS in a scenario: `{mx: shop.test}` (its MX set) and a `host` that is
a name the run's DNS server answers for (`host: smtp.shop.test`), or any name when the
scenario names its own `resolver:` (loadtest.resolver_spec).

An `mx:` entry stands for one server per MX host of the domain, as the scenario's `dns:`
zones publish them (or, with `resolver:`, as that resolver answers: loadtest.resolver_mx):
named by the host, at that host, its `priority` the MX preference, the entry's other keys
(port, starttls, ...) shared. The MX set is read once, when the scenario is validated (with
`resolver:`, when its file is loaded); each host's A record is looked up when mail is sent
(loadtest.dns_route), so a changed address is followed, a changed MX set is not (yet).

A host that is a name, not an address, is looked up through the run's DNS server when it
is in one of the scenario's zones, through the named `resolver:` when there is one; a name
outside the zones without a resolver only with `allow_remote` (the system's resolver then).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from maildrill.dns.zone import Zone, ZoneError, parse_zones
from maildrill.hostnames import ascii_domain


def is_name(host: str) -> bool:
    """A host to look up: not an address literal, not `localhost`."""
    if host == "localhost":
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def zone_of(host: str, zones: Sequence[Zone]) -> Zone | None:
    """The zone of `zones` that `host` falls in, if any."""
    name = host.lower().rstrip(".")
    for zone in zones:
        if name == zone.origin or name.endswith("." + zone.origin):
            return zone
    return None


def served(host: str, zones: Sequence[Zone]) -> bool:
    """`host` is a name the run's DNS server answers with records (an owner in a zone)."""
    zone = zone_of(host, zones)
    return zone is not None and host.lower().rstrip(".") in zone.names()


def mx_hosts(domain: str, zones: Sequence[Zone]) -> list[tuple[int, str]]:
    """(preference, host) of the domain's MX records in the zones, lowest first."""
    name = domain.lower().rstrip(".")
    out = []
    for zone in zones:
        for record in zone.records:
            if record.name == name and record.rtype == "MX":
                preference, _, host = record.text().partition(" ")
                out.append((int(preference), host.rstrip(".").lower()))
    return sorted(out)


# (preference, host) of a domain's MX records, lowest first: from the zones, or a resolver.
MxSource = Callable[[str], list[tuple[int, str]]]


def unexpanded_mx(data: Any) -> bool:
    """The raw data has `{mx: DOMAIN}` entries still to be made servers (ones without name)."""
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
        return False
    return any(isinstance(e, dict) and "mx" in e and "name" not in e for e in data["servers"])


def expand_mx(data: Any, mx_of: MxSource | None = None) -> Any:
    """The scenario's raw data with each `{mx: DOMAIN, ...}` entry of `servers:` (one
    without a name) replaced by a server per MX host, read by `mx_of` (default: the `dns:`
    zones); ValueError in one line when the domain has no MX there. Data that is not a
    scenario is left to the model."""
    if not unexpanded_mx(data):
        return data
    if mx_of is None and data.get("resolver") is not None:
        raise ValueError(
            "servers: an mx: entry with resolver: is read from that resolver as the scenario "
            "file is loaded (maildrill validate, run, check, sinks), not from data alone"
        )
    entries = data["servers"]
    zones = _zones(data.get("dns")) if mx_of is None else ()
    servers: list[Any] = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and "mx" in entry and "name" not in entry):
            servers.append(entry)
            continue
        domain = entry["mx"]
        if not isinstance(domain, str):
            raise ValueError(f"servers[{i}].mx: expected a domain name, got {domain!r}")
        _check_domain(i, domain)  # before any resolver is asked
        if "host" in entry or "priority" in entry:
            raise ValueError(f"servers[{i}]: mx {domain}: host and priority come from the MX")
        if mx_of is not None:
            try:
                hosts = mx_of(domain)
            except ValueError as exc:
                raise ValueError(f"servers[{i}]: {exc}") from None
        elif zones is None:
            raise ValueError(
                f"servers[{i}]: mx {domain}: the scenario has no dns: zones to read it from "
                "(nor a resolver: to ask)"
            )
        else:
            hosts = mx_hosts(domain, zones)
        if not hosts:
            where = "the resolver has" if mx_of is not None else "the dns: zones have"
            raise ValueError(f"servers[{i}]: mx {domain}: {where} no MX for it")
        for preference, host in hosts:
            if not host:
                raise ValueError(f"servers[{i}]: mx {domain}: a null MX takes no mail")
            servers.append({**entry, "name": host, "host": host, "priority": preference})
    return {**data, "servers": servers}


def _check_domain(i: int, domain: str) -> None:
    """An `mx:` domain is a host name (one trailing dot allowed): anything else is never
    asked (`shop..test`, a label over 63 characters; `""` would ask for the root's MX)."""
    try:
        ascii_domain(domain[:-1] if domain.endswith(".") else domain)
    except ValueError as exc:
        raise ValueError(f"servers[{i}].mx: {exc}") from None


def _zones(dns: Any) -> tuple[Zone, ...] | None:
    """The zones of a raw `dns:` section; its errors in one line, as the scenario's own."""
    if not isinstance(dns, dict) or "zones" not in dns:
        return None
    try:
        return parse_zones(dns["zones"], allow_remote=True)
    except ZoneError as exc:
        raise ValueError(f"dns: {exc}") from None
