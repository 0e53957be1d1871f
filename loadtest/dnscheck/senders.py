"""Who sends the domain's mail, as `maildrill check --dns` checks it: the scenario's
Postfix instances (the MTAs maildrill builds deliver to the providers) and any server
named on the command line with the address it connects from.

A Postfix instance's identity is the one the run gives it (`loadtest.mta_identity`:
`postfix.source_address` and `postfix.helo_name`, else 127.0.0.11 for the first instance,
.12 for the next, and its hostname); its DKIM selector is `postfix.dkim: {selector,
domain}`. The command line (`--source`, `--helo`, `--dkim`, `--dkim-key`) gives or
overrides any of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from loadtest.dkim_keys import key_id
from loadtest.dnscheck.facts import DkimKey, Sender
from loadtest.dnscheck.public_keys import DkimKeyError, key_file_public
from loadtest.mta_identity import identities
from loadtest.scenario import Scenario
from maildrill.hostnames import ascii_domain
from maildrill.netaddr import is_loopback


class SenderError(ValueError):
    """A sending server that cannot be checked; the message is meant for the user as is."""


@dataclass
class Explicit:
    """What the command line says of each server: NAME -> value."""

    sources: dict[str, str] = field(default_factory=dict)  # --source NAME=ADDRESS
    helos: dict[str, str] = field(default_factory=dict)  # --helo NAME=HOST
    selectors: dict[str, list[str]] = field(default_factory=dict)  # --dkim NAME=SELECTOR[:DOMAIN]
    keys: dict[str, Path] = field(default_factory=dict)  # --dkim-key NAME=FILE


def pairs(items: Sequence[str], flag: str) -> Iterator[tuple[str, str]]:
    """NAME=VALUE items of a repeatable flag; SenderError names the one that is not."""
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SenderError(f"{flag} {item!r}: expected NAME=VALUE")
        yield name.strip(), value.strip()


def explicit_of(
    sources: Sequence[str], helos: Sequence[str], dkim: Sequence[str], keys: Sequence[str]
) -> Explicit:
    out = Explicit(
        sources=dict(pairs(sources, "--source")),
        helos=dict(pairs(helos, "--helo")),
        keys={name: Path(path) for name, path in pairs(keys, "--dkim-key")},
    )
    for name, selector in pairs(dkim, "--dkim"):
        out.selectors.setdefault(name, []).append(selector)
    return out


def senders_of(
    scenario: Scenario | None,
    domain: str,
    explicit: Explicit,
    signing: Mapping[tuple[str, str], bytes] | None = None,
) -> list[Sender]:
    """The sending servers, the scenario's preferred first, then those named only on the
    command line; SenderError for an address, name or key that cannot be used. `signing`:
    the public key of each (selector, domain) when known (the run's keys, run_keys);
    `--dkim-key` overrides it."""
    allow_remote = scenario.allow_remote if scenario is not None else False
    found: dict[str, Sender] = {}
    if scenario is not None:
        found = _scenario_senders(scenario)
        priority = {s.name: s.priority for s in scenario.servers}
        for name, address in explicit.sources.items():
            known = found.get(name)
            base = known or Sender(name, address, "", (), priority.get(name, 10))
            found[name] = replace(base, address=address)
        order = [*scenario.ordered_servers(), *found]
        found = {n: found[n] for n in dict.fromkeys(order) if n in found}
    else:
        found = {n: Sender(n, a, "") for n, a in explicit.sources.items()}
    for what, names in (
        ("--helo", explicit.helos),
        ("--dkim", explicit.selectors),
        ("--dkim-key", explicit.keys),
    ):
        for name in names:
            if name not in found:
                raise SenderError(
                    f"{what} {name}=...: {name} is not a sending server here "
                    "(a postfix: server of the scenario, or one given --source)"
                )
    senders = []
    for sender in found.values():
        _check_address(sender, allow_remote)
        helo = explicit.helos.get(sender.name, sender.helo_name)
        dkim = [
            replace(k, public_key=(signing or {}).get((k.selector, k.domain))) for k in sender.dkim
        ]
        for text in explicit.selectors.get(sender.name, []):
            selector, _, d = text.partition(":")
            dkim.append(DkimKey(_domain(selector, "--dkim"), _domain(d or domain, "--dkim")))
        if sender.name in explicit.keys:
            public = _key(explicit.keys[sender.name])
            dkim = [replace(k, public_key=public) for k in dkim]
        senders.append(
            replace(sender, helo_name=helo and _domain(helo, "--helo"), dkim=tuple(dkim))
        )
    if not senders:
        raise SenderError(
            "check --dns: no sending server: the scenario has no postfix: servers; name "
            "those that send with --source NAME=ADDRESS"
        )
    return senders


def _scenario_senders(scenario: Scenario) -> dict[str, Sender]:
    """Each Postfix instance as it will deliver (`mta_identity`: the run's own defaults)."""
    who = identities(scenario.servers)
    out: dict[str, Sender] = {}
    for server in scenario.servers:
        if server.postfix is None:
            continue
        dkim = server.postfix.dkim
        keys = (DkimKey(*key_id(dkim)),) if dkim is not None else ()
        me = who[server.name]
        out[server.name] = Sender(
            name=server.name,
            address=me.source_address,
            helo_name=me.helo_name,
            dkim=keys,
            priority=server.priority,
        )
    return out


def _check_address(sender: Sender, allow_remote: bool) -> None:
    try:
        ipaddress.ip_address(sender.address)
    except ValueError:
        raise SenderError(f"--source {sender.name}={sender.address}: not an IP address") from None
    if not allow_remote and not is_loopback(sender.address):
        raise SenderError(
            f"{sender.name}: {sender.address} is outside loopback; a scenario with "
            "allow_remote: true may name such addresses"
        )


def _domain(text: str, flag: str) -> str:
    try:
        return ascii_domain(text)
    except ValueError as exc:
        raise SenderError(f"{flag}: {exc}") from None


def _key(path: Path) -> bytes:
    try:
        return key_file_public(path)
    except DkimKeyError as exc:
        raise SenderError(f"--dkim-key: {exc}") from None
