"""The run's DKIM keys: one RSA key pair per (selector, domain) the scenario's Postfix
instances sign with, made fresh for each run, and the TXT records that publish them.

Keys are made here with `cryptography` (already a dependency), not `opendkim-genkey`: the
run needs the public key as data (to put into its zone, and a second, unrelated one for
`publish: wrong`), which the library hands over directly, where opendkim-genkey writes a
BIND fragment to be parsed back; and this way the key and its record are made and tested
without a child process. OpenDKIM reads the private key as the PEM file written here.

Two instances naming the same selector and domain share one key, as a secondary that
copies the primary's key does; they must then agree on what is published.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loadtest.server_spec import DkimSpec, ServerSpec
from maildrill.dns.zone import Zone, parse_zones

KEY_BITS = 2048  # what Gmail and Yahoo ask of bulk senders (1024 at the least)


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_pem: bytes = dataclasses.field(repr=False)
    public_b64: str  # p= of the key the instances sign with
    published_b64: str | None  # p= the zone publishes: None, the same, or another key's

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def file_stem(self) -> str:
        """How its files in the run directory are named: the record's name."""
        return self.record_name


def key_id(spec: DkimSpec) -> tuple[str, str]:
    return spec.selector.lower(), spec.domain


def txt_value(public_b64: str) -> str:
    """The key record (RFC 6376 section 3.6.1)."""
    return f"v=DKIM1; k=rsa; p={public_b64}"


def new_key_pair() -> tuple[bytes, str]:
    """(private key PEM, public key base64 DER SubjectPublicKeyInfo as p= wants it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(der).decode("ascii")


def signers(servers: Sequence[ServerSpec]) -> dict[str, DkimSpec]:
    """Each Postfix server that signs: its dkim table."""
    return {s.name: s.postfix.dkim for s in servers if s.postfix is not None and s.postfix.dkim}


def make_keys(specs: Iterable[DkimSpec]) -> dict[tuple[str, str], DkimKey]:
    """A key per (selector, domain); for `publish: wrong`, another key's public half is
    what the zone gets."""
    keys: dict[tuple[str, str], DkimKey] = {}
    for spec in specs:
        ident = key_id(spec)
        if ident in keys:
            continue
        pem, public = new_key_pair()
        published: str | None = None
        if spec.publish == "wrong":
            published = new_key_pair()[1]
        elif spec.publish:
            published = public
        keys[ident] = DkimKey(ident[0], ident[1], pem, public, published)
    return keys


def published_records(keys: Iterable[DkimKey]) -> dict[str, str]:
    """Owner name: TXT value, for each key the zone publishes."""
    return {k.record_name: txt_value(k.published_b64) for k in keys if k.published_b64 is not None}


def with_txt(zones: Sequence[Zone], records: Mapping[str, str]) -> tuple[Zone, ...]:
    """`zones` with a TXT record added at each name (in the zone that holds it)."""
    out = list(zones)
    for name, value in records.items():
        i = zone_of(out, name)
        if i is None:
            raise ValueError(f"{name} is in none of the run's zones")
        zone = out[i]
        (added,) = parse_zones({zone.origin: {f"{name}.": {"TXT": value}}}, allow_remote=True)
        out[i] = dataclasses.replace(zone, records=zone.records + added.records)
    return tuple(out)


def publishing_problem(servers: Sequence[ServerSpec], zones: Sequence[Zone]) -> str | None:
    """Why the run could not publish the keys its instances sign with, or None: a key to
    publish needs a zone that holds its name and has no record there already; instances
    sharing a key agree on what is published."""
    seen: dict[tuple[str, str], tuple[str, DkimSpec]] = {}
    for server, spec in signers(servers).items():
        where = f"servers: {server!r}: postfix.dkim"
        ident = key_id(spec)
        if ident in seen and seen[ident][1].publish != spec.publish:
            other = seen[ident][0]
            return (
                f"{where}: {spec.record_name} is {other!r}'s key too (one key per selector "
                f"and domain), published there as {seen[ident][1].publish}, here as "
                f"{spec.publish}"
            )
        seen.setdefault(ident, (server, spec))
        if spec.publish is False:
            continue
        i = zone_of(zones, spec.record_name)
        if i is None:
            return (
                f"{where}: {spec.record_name} is in none of the dns: zones, so its key cannot "
                "be published (add the zone, or publish: false)"
            )
        if spec.record_name in zones[i].names():
            return (
                f"{where}: zone {zones[i].origin} already has {spec.record_name}; maildrill "
                "publishes the run's key there (publish: false leaves the zone's own)"
            )
    return None


def zone_of(zones: Sequence[Zone], name: str) -> int | None:
    """The index of the zone that holds `name`, None when none does."""
    for i, zone in enumerate(zones):
        if name == zone.origin or name.endswith("." + zone.origin):
            return i
    return None
