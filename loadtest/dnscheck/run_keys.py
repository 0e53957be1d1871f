"""The DKIM keys a run makes, made for the check of the scenario's own zones.

`maildrill run` makes a key pair per (selector, domain) a Postfix instance signs with
(`postfix.dkim: {selector, domain, publish}`), and publishes its public half in the run's
zone: the key itself (`publish: true`), none (`false`: the zone's own record, if any,
stands) or another key's (`wrong`). The zones served for `check --dns` must hold the same,
or every such selector would look unpublished; and the key each instance signs with is
then known, so a selector published with another key is found.

This mirrors `loadtest.dkim_keys` of issue 15 part 3 (written beside it, on another
branch): the scenario is read by attribute, so nothing changes here before that key
exists, and the two can be made one once both are on main.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maildrill.dns.zone import Zone, parse_zones

KEY_BITS = 2048  # as the run's keys


@dataclass
class RunKeys:
    txt: dict[str, str] = field(default_factory=dict)  # owner name -> TXT value to publish
    signing: dict[tuple[str, str], bytes] = field(default_factory=dict)  # -> SPKI DER


def run_keys(servers: Sequence[Any]) -> RunKeys:
    """A key per (selector, domain) named in a server's `postfix.dkim` with `publish`."""
    out = RunKeys()
    for server in servers:
        dkim: Any = getattr(getattr(server, "postfix", None), "dkim", None)
        publish = getattr(dkim, "publish", None)
        if publish is None:  # no postfix.dkim, or not one the run publishes for
            continue
        ident = (str(dkim.selector).lower(), str(dkim.domain).lower())
        if ident in out.signing:
            continue  # instances naming one selector and domain share its key
        out.signing[ident] = _public_key()
        name = f"{ident[0]}._domainkey.{ident[1]}"
        if publish is True:
            out.txt[name] = _record(out.signing[ident])
        elif publish == "wrong":
            out.txt[name] = _record(_public_key())
    return out


def _public_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _record(spki: bytes) -> str:
    return f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode('ascii')}"


def with_txt(zones: Sequence[Zone], records: Mapping[str, str]) -> tuple[Zone, ...]:
    """`zones` with each TXT record added in the zone that holds its name; a name in none
    of them is left out (its selector is then found unpublished, as a provider would)."""
    out = list(zones)
    for name, value in records.items():
        for i, zone in enumerate(out):
            if name == zone.origin or name.endswith(f".{zone.origin}"):
                (added,) = parse_zones(
                    {zone.origin: {f"{name}.": {"TXT": value}}}, allow_remote=True
                )
                out[i] = dataclasses.replace(zone, records=zone.records + added.records)
                break
    return tuple(out)
