"""The run's DNS zones: records as an email-ops engineer writes them, checked, then served.

A scenario's `dns: zones:` maps each zone to its records. At the zone's top level, the record
types in upper case are the apex's records and `ttl` is the zone's default TTL; every other
key is an owner name, relative to the zone (`mx1`, `_dmarc`, `s1._domainkey`), the zone
itself (`@`), an absolute name inside it (`mx1.shop.test`, a trailing dot allowed), or, in
a reverse zone, an address (`127.0.0.11`: its in-addr.arpa name). Under a name, its records
by type (any case) and an optional `ttl`:

    shop.test:
      ttl: 300
      MX: [10 mx1.shop.test, 20 mx2.shop.test]
      TXT: v=spf1 ip4:127.0.0.11 -all
      mx1: {A: 127.0.0.11}
      _dmarc: {TXT: "v=DMARC1; p=reject"}
      s1._domainkey: {TXT: "v=DKIM1; k=rsa; p=MIIBIjANBg...", ttl: 60}
    127.in-addr.arpa:
      127.0.0.11: {PTR: mx1.shop.test}

A value is one record or a list of them: A and AAAA an address; MX `PREFERENCE HOST` or
`{preference, host}` (`0 .` is RFC 7505's null MX); PTR and CNAME a host name; TXT a string,
split for the user into the 255-byte strings a TXT record is made of (a DKIM key is longer),
or a list of strings `[[a, b]]` for one record of given strings. Targets are always
absolute names. Every problem is one line naming the zone, the name and the record.

What a zone becomes: `Zone` (origin, records), `Zone.to_dns()` the `dns.zone.Zone` that
`maildrill.dns.server` serves, with an SOA and an NS record at the apex made up for it,
and `Zone.to_text()` its master file, the form written to a run directory and served.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.zone

from maildrill.hostnames import MAX_NAME, ascii_domain

RECORD_TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME")
DEFAULT_TTL = 300
MAX_TTL = 2**31 - 1  # RFC 2181 section 8
MAX_ZONES = 64
MAX_RECORDS = 10_000  # in all zones together: a run's zone, not the internet's
MAX_VALUES = 100  # records of one type at one name: an answer still fits a TCP message
MAX_TXT_BYTES = 8192  # one TXT record: a 4096-bit DKIM key is about 800 characters
TXT_STRING = 255  # RFC 1035 section 3.3.14: a character-string is one length byte long

# The names no one owns on the internet (RFC 2606, RFC 6761) and the reverse zones of
# loopback and the documentation networks (RFC 5737, RFC 3849): a zone elsewhere would
# shadow a real domain, so it needs the scenario's allow_remote.
RESERVED_TLDS = ("test", "example", "invalid", "localhost")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_REVERSE = (
    "127.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa",
    ipaddress.ip_address("::1").reverse_pointer,
    "8.b.d.0.1.0.0.2.ip6.arpa",
)
REVERSE_SUFFIXES = ("in-addr.arpa", "ip6.arpa")

# An owner name's label: letters, digits, hyphens and underscores (`_dmarc`, `_domainkey`).
_OWNER_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")

# The SOA made up for each zone (RFC 1035 section 3.3.13); the negative-answer TTL
# (RFC 2308) is the zone's default TTL.
SOA_HOST = "localhost"
SOA_SERIAL, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 1, 3600, 600, 86400

_IN = dns.rdataclass.IN


class ZoneError(ValueError):
    """Zone data that cannot be served; the message names the zone, name and record."""


@dataclass(frozen=True)
class Record:
    """One resource record: `name` absolute, lower case, no trailing dot; `rdata` as
    dnspython holds it (its `to_text()` is the master-file form)."""

    name: str
    rtype: str
    ttl: int
    rdata: dns.rdata.Rdata

    def text(self) -> str:
        return self.rdata.to_text()


@dataclass(frozen=True)
class Zone:
    """A zone as served: its origin (no trailing dot), default TTL and records."""

    origin: str
    ttl: int
    records: tuple[Record, ...]

    def soa(self) -> dns.rdata.Rdata:
        return _rdata(
            "SOA",
            f"{SOA_HOST}. hostmaster.{self.origin}. {SOA_SERIAL} {SOA_REFRESH} {SOA_RETRY} "
            f"{SOA_EXPIRE} {self.ttl}",
        )

    def to_dns(self) -> dns.zone.Zone:
        """The dnspython zone: the records, with the SOA and NS at the apex."""
        zone = dns.zone.Zone(_abs(self.origin), relativize=False)
        apex = [
            (self.origin, "SOA", self.ttl, self.soa()),
            (self.origin, "NS", self.ttl, _ns(SOA_HOST)),
        ]
        for name, rtype, ttl, rdata in apex + [
            (r.name, r.rtype, r.ttl, r.rdata) for r in self.records
        ]:
            rdataset = zone.find_rdataset(_abs(name), dns.rdatatype.from_text(rtype), create=True)
            rdataset.add(rdata, ttl)
        return zone

    def to_text(self) -> str:
        """The master file (RFC 1035 section 5), absolute names, `$ORIGIN` first."""
        body = self.to_dns().to_text(relativize=False, want_origin=True)
        return body if body.endswith("\n") else body + "\n"

    def names(self) -> tuple[str, ...]:
        return tuple(sorted({r.name for r in self.records}))


def parse_zones(data: Any, *, allow_remote: bool = False) -> tuple[Zone, ...]:
    """The zones of a `dns: zones:` mapping, checked; ZoneError names what is wrong."""
    if not isinstance(data, Mapping) or not data:
        raise ZoneError("zones: expected a mapping of zone names to their records")
    if len(data) > MAX_ZONES:
        raise ZoneError(f"zones: {len(data)} zones, at most {MAX_ZONES}")
    zones: list[Zone] = []
    for key, body in data.items():
        origin = _zone_name(key)
        if any(z.origin == origin for z in zones):
            raise ZoneError(f"zone {key!r} is {origin!r} again")
        if not allow_remote and not is_reserved_zone(origin):
            raise ZoneError(
                f"zone {origin}: not a reserved name (.test, .example, .invalid, .localhost, "
                "example.com/net/org, loopback or documentation reverse zones); a zone of a "
                "real domain needs allow_remote: true"
            )
        zones.append(_parse_zone(origin, body))
    _no_nesting(zones)
    total = sum(len(z.records) for z in zones)
    if total > MAX_RECORDS:
        raise ZoneError(f"zones: {total} records, at most {MAX_RECORDS}")
    return tuple(zones)


def is_reserved_zone(origin: str) -> bool:
    """A name nobody owns on the internet, or a reverse zone of loopback/documentation."""
    if origin.rsplit(".", 1)[-1] in RESERVED_TLDS:
        return True
    return any(_within(origin, d) for d in RESERVED_DOMAINS + RESERVED_REVERSE)


def is_reverse_name(name: str) -> bool:
    return any(_within(name, suffix) for suffix in REVERSE_SUFFIXES)


def reverse_name(address: str) -> str:
    """127.0.0.11 -> 11.0.0.127.in-addr.arpa (and nibbles under ip6.arpa for IPv6)."""
    return ipaddress.ip_address(address).reverse_pointer


# -- the parts ---------------------------------------------------------------------------


def _parse_zone(origin: str, body: Any) -> Zone:
    where = f"zone {origin}"
    if not isinstance(body, Mapping):
        raise ZoneError(f"{where}: expected a mapping of names and record types")
    ttl = _ttl(body.get("ttl", DEFAULT_TTL), f"{where}: ttl")
    apex = {k: v for k, v in body.items() if k in RECORD_TYPES}
    owners: dict[str, tuple[str, Mapping[str, Any]]] = {}
    if apex:
        owners[origin] = ("@", apex)
    for key, value in body.items():
        if key in RECORD_TYPES or key == "ttl":
            continue
        name = _owner(key, origin, where)
        if not isinstance(value, Mapping):
            hint = f" (record types are upper case: {key.upper()})" if _is_type(key) else ""
            raise ZoneError(f"{where}: {key}: expected a mapping of record types{hint}")
        if name in owners:
            raise ZoneError(f"{where}: {key!r} names {name} again ({owners[name][0]!r})")
        owners[name] = (str(key), value)
    records: list[Record] = []
    for name, (_key, types) in owners.items():
        records.extend(_parse_owner(origin, name, types, ttl))
    return Zone(origin, ttl, tuple(records))


def _parse_owner(origin: str, name: str, types: Mapping[str, Any], ttl: int) -> list[Record]:
    where = f"zone {origin}: {name}"
    own_ttl = _ttl(types.get("ttl", ttl), f"{where}: ttl")
    records: list[Record] = []
    kinds: set[str] = set()
    for key, value in types.items():
        if key == "ttl":
            continue
        rtype = str(key).upper()
        if rtype not in RECORD_TYPES:
            raise ZoneError(
                f"{where}: {key!r} is not a record type maildrill serves "
                f"(one of {', '.join(RECORD_TYPES)}; SOA and NS are made for the zone)"
            )
        if rtype in kinds:
            raise ZoneError(f"{where}: {rtype} given twice")
        kinds.add(rtype)
        values = _values(value, rtype, where)
        for item in values:
            rdata = _RDATA[rtype](item, f"{where} {rtype} {_shown(item)}")
            records.append(Record(name, rtype, own_ttl, rdata))
    _check_owner(origin, name, kinds, records, where)
    return records


def _check_owner(
    origin: str, name: str, kinds: set[str], records: list[Record], where: str
) -> None:
    if "CNAME" in kinds:
        if name == origin:
            raise ZoneError(f"{where} CNAME: not at the zone's apex (its SOA lives there)")
        if len(kinds) > 1 or sum(r.rtype == "CNAME" for r in records) > 1:
            raise ZoneError(f"{where} CNAME: a name with a CNAME has no other record (RFC 1034)")
    if "PTR" in kinds and not is_reverse_name(name):
        raise ZoneError(f"{where} PTR: a PTR's name is under in-addr.arpa or ip6.arpa")
    mx = [r.rdata for r in records if r.rtype == "MX"]
    if any(_is_null_mx(m) for m in mx) and len(mx) > 1:
        raise ZoneError(f"{where} MX: a null MX (0 .) is the name's only MX (RFC 7505)")


def _values(value: Any, rtype: str, where: str) -> list[Any]:
    items = list(value) if isinstance(value, list) else [value]
    if not items:
        raise ZoneError(f"{where} {rtype}: an empty list; leave the type out instead")
    if len(items) > MAX_VALUES:
        raise ZoneError(f"{where} {rtype}: {len(items)} records, at most {MAX_VALUES}")
    return items


def _zone_name(key: Any) -> str:
    try:
        return ascii_domain(str(key).removesuffix(".") if isinstance(key, str) else key)
    except ValueError as exc:
        raise ZoneError(f"zone {key!r}: {exc}") from None


def _owner(key: Any, origin: str, where: str) -> str:
    if isinstance(key, int) and not isinstance(key, bool):  # YAML reads `11:` as a number
        key = str(key)
    if not isinstance(key, str) or not key:
        raise ZoneError(f"{where}: {key!r} is not a name")
    if key == "@":
        return origin
    try:
        name = reverse_name(key)
    except ValueError:
        name = _relative(key, origin, where)
    if not _within(name, origin):
        raise ZoneError(f"{where}: {key} ({name}) is outside the zone")
    return name


def _relative(key: str, origin: str, where: str) -> str:
    absolute = key.endswith(".")
    text = _owner_text(key.removesuffix("."), where)
    name = text if absolute or _within(text, origin) else f"{text}.{origin}"
    if len(name) > MAX_NAME:
        raise ZoneError(f"{where}: {key} ({name}) is longer than {MAX_NAME} characters")
    return name


def _owner_text(text: str, where: str) -> str:
    if not text.isascii():
        try:
            return ascii_domain(text)
        except ValueError as exc:
            raise ZoneError(f"{where}: {exc}") from None
    lowered = text.lower()
    if not all(_OWNER_LABEL.fullmatch(label) for label in lowered.split(".")):
        raise ZoneError(
            f"{where}: {text!r} is not a name: labels of 1-63 letters, digits, hyphens or "
            "underscores (no wildcards)"
        )
    return lowered


def _target(value: Any, where: str, *, underscores: bool = False) -> dns.name.Name:
    if not isinstance(value, str):
        raise ZoneError(f"{where}: expected a host name")
    text = value.removesuffix(".")
    try:
        return _abs(_owner_text(text, where) if underscores else ascii_domain(text))
    except ValueError as exc:
        raise ZoneError(f"{where}: {exc}") from None


def _ttl(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TTL:
        raise ZoneError(f"{where}: {value!r} is not a TTL (whole seconds, 0 to {MAX_TTL})")
    return value


def _no_nesting(zones: Sequence[Zone]) -> None:
    for inner in zones:
        for outer in zones:
            if inner is not outer and _within(inner.origin, outer.origin):
                raise ZoneError(
                    f"zone {inner.origin} is inside zone {outer.origin}: "
                    f"put its records in {outer.origin}"
                )


# -- each record type --------------------------------------------------------------------


def _a(value: Any, where: str) -> dns.rdata.Rdata:
    try:
        address = ipaddress.IPv4Address(value if isinstance(value, str) else "")
    except ValueError:
        raise ZoneError(f"{where}: not an IPv4 address") from None
    return _rdata("A", str(address))


def _aaaa(value: Any, where: str) -> dns.rdata.Rdata:
    try:
        address = ipaddress.IPv6Address(value if isinstance(value, str) else "")
    except ValueError:
        raise ZoneError(f"{where}: not an IPv6 address") from None
    return _rdata("AAAA", str(address))


def _mx(value: Any, where: str) -> dns.rdata.Rdata:
    if isinstance(value, Mapping):
        if set(value) - {"preference", "host"} or "preference" not in value:
            raise ZoneError(f"{where}: expected {{preference, host}}")
        preference, host = value.get("preference"), value.get("host")
    elif isinstance(value, str) and len(value.split()) == 2:
        first, host = value.split()
        preference = int(first) if first.isdigit() else first
    else:
        raise ZoneError(f"{where}: expected 'PREFERENCE HOST', e.g. '10 mx1.shop.test'")
    if isinstance(preference, bool) or not isinstance(preference, int):
        raise ZoneError(f"{where}: the preference {preference!r} is not a number")
    if not 0 <= preference <= 65535:
        raise ZoneError(f"{where}: the preference {preference} is not within 0-65535")
    if host == ".":
        if preference != 0:
            raise ZoneError(f"{where}: a null MX (host '.') has preference 0 (RFC 7505)")
        exchange = dns.name.root
    else:
        exchange = _target(host, where)
    return _rdata("MX", f"{preference} {exchange.to_text()}")


def _txt(value: Any, where: str) -> dns.rdata.Rdata:
    if isinstance(value, list):  # the strings of one record, as the user split them
        if not value or not all(isinstance(s, str) for s in value):
            raise ZoneError(f"{where}: expected a list of strings")
        strings = [s.encode("utf-8") for s in value]
        for i, chunk in enumerate(strings):
            if len(chunk) > TXT_STRING:
                raise ZoneError(
                    f"{where}: string {i + 1} is {len(chunk)} bytes, at most {TXT_STRING} "
                    "(or give one string and maildrill splits it)"
                )
    elif isinstance(value, str):
        data = value.encode("utf-8")
        strings = [data[i : i + TXT_STRING] for i in range(0, len(data), TXT_STRING)] or [b""]
    else:
        raise ZoneError(f"{where}: expected text")
    size = sum(len(s) for s in strings)
    if size > MAX_TXT_BYTES:
        raise ZoneError(f"{where}: {size} bytes, at most {MAX_TXT_BYTES} in one TXT record")
    return dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, strings)


def _ptr(value: Any, where: str) -> dns.rdata.Rdata:
    return _rdata("PTR", _target(value, where).to_text())


def _cname(value: Any, where: str) -> dns.rdata.Rdata:
    return _rdata("CNAME", _target(value, where, underscores=True).to_text())


_RDATA = {"A": _a, "AAAA": _aaaa, "MX": _mx, "TXT": _txt, "PTR": _ptr, "CNAME": _cname}


# -- small helpers -----------------------------------------------------------------------


def _abs(name: str) -> dns.name.Name:
    return dns.name.from_text(name, origin=dns.name.root)


def _rdata(rtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(_IN, dns.rdatatype.from_text(rtype), text)


def _ns(host: str) -> dns.rdata.Rdata:
    return _rdata("NS", f"{host}.")


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _is_type(key: Any) -> bool:
    return isinstance(key, str) and key.upper() in RECORD_TYPES


def _is_null_mx(rdata: dns.rdata.Rdata) -> bool:
    return isinstance(rdata, dns.rdtypes.ANY.MX.MX) and rdata.exchange == dns.name.root


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_rrsets(key: Any, types: Any, where: str) -> dict[tuple[str, str], tuple[Record, ...]]:
    """Record sets that replace the served ones (a DNS `records` fault): `key` an absolute
    name, `types` as under a name of a zone (`{A: 127.0.0.12, ttl: 5}`) with `ttl`
    required, and an empty list a set taken away. Checked as the zones' records are;
    ZoneError naming `where`, the name and the record."""
    if not isinstance(types, Mapping) or not types:
        raise ZoneError(f"{where}: {key}: expected a mapping of record types and a ttl")
    if "ttl" not in types:
        raise ZoneError(f"{where}: {key}: ttl is required (the TTL the new records carry)")
    if not isinstance(key, str) or "." not in key.strip("."):
        raise ZoneError(f"{where}: {key!r} is not an absolute name (e.g. smtp.shop.test)")
    name = _owner_text(key.removesuffix("."), where)
    origin = name.split(".", 1)[1]  # `_parse_owner` takes the name relative to its parent
    given = {k: v for k, v in types.items() if not (isinstance(v, list) and not v)}
    dropped = [str(k).upper() for k in types if k not in given]
    if any(t not in RECORD_TYPES for t in dropped):
        raise ZoneError(f"{where}: {name}: {dropped} are not all record types maildrill serves")
    try:
        records = _parse_owner(origin, name, given, DEFAULT_TTL) if len(given) > 1 else []
    except ZoneError as exc:  # it says `zone PARENT: NAME ...`: the parent is no zone here
        raise ZoneError(str(exc).replace(f"zone {origin}: ", f"{where}: ", 1)) from None
    sets: dict[tuple[str, str], tuple[Record, ...]] = {(name, t): () for t in dropped}
    for rtype in {r.rtype for r in records}:
        sets[(name, rtype)] = tuple(r for r in records if r.rtype == rtype)
    return sets
