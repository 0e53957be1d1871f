"""Ask one DNS server what a provider would ask about DOMAIN and each sender (I/O).

Blocking, like `maildrill.dns.resolver` and pyspf: a handful of lookups per server. SPF is
evaluated by pyspf (through sinks.authcheck, whose lookups go only to the server given,
never the system's resolver), as the provider sinks evaluate it; its lookup count is
walked here over the whole record, since an evaluation stops at the first match and would
hide terms past it that still count against every other sender.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from loadtest.dnscheck.facts import (
    DkimFacts,
    DkimKey,
    DmarcFacts,
    DnsFacts,
    MxFacts,
    PtrFacts,
    Sender,
    SenderFacts,
    SpfRecordFacts,
)
from loadtest.dnscheck.public_keys import DkimKeyError, record_public
from maildrill.dns.resolver import Resolver, Status
from maildrill.hostnames import ascii_domain
from sinks.authcheck.dmarc import organizational
from sinks.authcheck.lookup import ServerLookup
from sinks.authcheck.spf_check import check_spf

LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")  # and the redirect modifier
MAX_WALK_LOOKUPS = 40  # stop walking past this: far over the limit of 10 already
MAX_WALK_DEPTH = 10
MAX_PTR_NAMES = 10


def gather(resolver: Resolver, domain: str, senders: Sequence[Sender]) -> DnsFacts:
    """Everything `compare` decides on; never raises for what the zone lacks."""
    return DnsFacts(
        domain=domain,
        resolver=f"{resolver.host}:{resolver.port}",
        checked_at=time.time(),
        mx=mx_facts(resolver, domain),
        spf=spf_record(resolver, domain),
        dmarc=dmarc_facts(resolver, domain),
        senders=[sender_facts(resolver, domain, s) for s in senders],
    )


def mx_facts(resolver: Resolver, domain: str) -> MxFacts:
    found = resolver.mx(domain)
    facts = MxFacts(
        found.status.value, [(m.preference, m.host) for m in found.mx()], {}, found.detail
    )
    for _, host in facts.records:
        if host:  # "" is a null MX: no host to look up
            facts.addresses[host] = _addresses(resolver, host)
    return facts


def _addresses(resolver: Resolver, host: str) -> list[str]:
    out: list[str] = []
    for found in (resolver.a(host), resolver.aaaa(host)):
        out += found.records if found.ok else []
    return out


def spf_record(resolver: Resolver, domain: str) -> SpfRecordFacts:
    found = resolver.txt(domain)
    facts = SpfRecordFacts(found.status.value, _spf(found.records))
    if len(facts.records) == 1:
        _walk(resolver, domain, facts.records[0], facts, seen={domain}, depth=0)
    return facts


def _spf(records: Sequence[str]) -> list[str]:
    """The SPF records among TXT records (RFC 7208 4.5: "v=spf1" then a space or the end)."""
    return [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


def _walk(
    resolver: Resolver, domain: str, record: str, facts: SpfRecordFacts, seen: set[str], depth: int
) -> None:
    """Count the terms of `record` that cost a lookup, and those of the records it includes
    or redirects to."""
    for term in record.split()[1:]:
        if facts.lookups > MAX_WALK_LOOKUPS:
            return
        name, target = _term(term)
        if name not in (*LOOKUP_TERMS, "redirect"):
            continue
        facts.lookups += 1
        facts.terms.append(f"{domain}: {term}")
        if name not in ("include", "redirect"):
            continue
        if "%" in target:
            continue  # a macro: the name depends on the sender; nothing to walk
        try:
            ascii_domain(target)
        except ValueError:
            facts.problem = facts.problem or f"{domain}: {term}: not a domain name"
            continue
        if target in seen or depth >= MAX_WALK_DEPTH:
            facts.problem = facts.problem or f"{domain}: {term} loops back"
            continue
        nested = resolver.txt(target)
        records = _spf(nested.records)
        if len(records) != 1:
            what = "no SPF record" if not records else f"{len(records)} SPF records"
            if nested.status is Status.TEMPERROR:
                what = f"no answer ({nested.detail})"
            facts.problem = facts.problem or f"{domain}: {term}: {target} has {what}"
            continue
        _walk(resolver, target, records[0], facts, seen | {target}, depth + 1)


def _term(term: str) -> tuple[str, str]:
    """(mechanism or modifier name, its domain) of one SPF term: `-include:x.test` is
    ("include", "x.test"), `a/24` ("a", ""), `redirect=x.test` ("redirect", "x.test")."""
    body = term.lstrip("+-~?")
    if body.lower().startswith("redirect="):
        return "redirect", body.partition("=")[2].lower().rstrip(".")
    name, _, rest = body.partition(":")
    return name.split("/")[0].lower(), rest.split("/")[0].lower().rstrip(".")


def dmarc_facts(resolver: Resolver, domain: str) -> DmarcFacts:
    """The record at _dmarc.DOMAIN, or else at its organizational domain's (RFC 7489
    6.6.3), as a receiver finds it."""
    facts = DmarcFacts("nxdomain")
    for name in dict.fromkeys((domain, organizational(domain))):
        found = resolver.txt(f"_dmarc.{name}")
        records = [r for r in found.records if r.replace(" ", "").startswith("v=DMARC1")]
        facts = DmarcFacts(found.status.value, records, found.detail, name)
        if records or found.status is Status.TEMPERROR:
            break
    return facts


def sender_facts(resolver: Resolver, domain: str, sender: Sender) -> SenderFacts:
    spf, _, explanation = check_spf(
        ServerLookup(resolver.host, resolver.port, resolver.timeout),
        sender.address,
        f"postmaster@{domain}",
        sender.helo_name or domain,
        resolver.timeout * 4,
    )
    return SenderFacts(
        name=sender.name,
        address=sender.address,
        helo_name=sender.helo_name,
        priority=sender.priority,
        spf=spf.value,
        spf_explanation=explanation,
        ptr=ptr_facts(resolver, sender.address, sender.helo_name),
        dkim=[dkim_facts(resolver, key) for key in sender.dkim],
    )


def ptr_facts(resolver: Resolver, address: str, helo_name: str) -> PtrFacts:
    found = resolver.ptr(address)
    facts = PtrFacts(found.status.value, list(found.records[:MAX_PTR_NAMES]))
    ip = ipaddress.ip_address(address)
    for name in facts.names:
        if ip in {ipaddress.ip_address(a) for a in _addresses(resolver, name)}:
            facts.confirmed.append(name)
    if helo_name and not helo_name.startswith("["):
        a, aaaa = resolver.a(helo_name), resolver.aaaa(helo_name)
        facts.helo_status = (a if a.ok or not aaaa.ok else aaaa).status.value
        facts.helo_addresses = [*a.records, *aaaa.records]
    return facts


def dkim_facts(resolver: Resolver, key: DkimKey) -> DkimFacts:
    found = resolver.txt(key.name)
    facts = DkimFacts(key.selector, key.domain, found.status.value)
    if not found.ok:
        return facts
    facts.record = found.records[0]
    if len(found.records) > 1:
        facts.problem = f"{len(found.records)} TXT records: receivers may read either"
    try:
        published = record_public(facts.record)
    except DkimKeyError as exc:
        facts.problem = str(exc)
        return facts
    if key.public_key is not None:
        facts.key_matches = published == key.public_key
    return facts
