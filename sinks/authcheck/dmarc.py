"""DMARC (RFC 7489): the From domain's policy, and whether SPF or DKIM passed aligned.

pyspf and dkimpy give no DMARC; the rules are few and written here over the record's
tags. The organizational domain (RFC 7489 3.2) needs the Public Suffix List in general;
a drill's zones are reserved test names (RFC 2606/6761: .test, .example, .invalid,
.localhost, example.com), whose public suffix is their last label, so the organizational
domain is taken as the last two labels. That rule is wrong for names under a multi-label
public suffix (shop.co.uk): a real-world zone would need the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from sinks.authcheck.lookup import Lookup, TempDnsError
from sinks.authcheck.verdicts import Verdict

POLICIES = ("none", "quarantine", "reject")


def organizational(domain: str) -> str:
    """The organizational domain under the reserved-test-zone rule (module docstring)."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 3.1: strict (s): the same name; relaxed (r): the same organizational one."""
    if not identifier:
        return False
    a, b = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b if mode == "s" else organizational(a) == organizational(b)


def from_domain(message: bytes) -> str | None:
    """The RFC5322.From domain; None when there is not exactly one address (RFC 7489
    6.6.1: such a message cannot be judged, permerror here)."""
    headers = BytesHeaderParser().parsebytes(message)
    values = headers.get_all("From") or []
    addresses = [addr for _, addr in getaddresses([str(v) for v in values]) if addr]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].lower().strip(">").rstrip(".")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: str  # p= (or sp= for a subdomain under its organizational domain's record)
    adkim: str  # r or s
    aspf: str


def parse_record(text: str) -> DmarcRecord | None:
    """The tags of a `v=DMARC1; p=...` record; None if it is not one (RFC 7489 6.3: an
    invalid p= makes the record unusable)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    if tags.get("v") != "DMARC1" or tags.get("p", "").lower() not in POLICIES:
        return None
    return DmarcRecord(
        policy=tags["p"].lower(),
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
    )


def find_record(lookup: Lookup, domain: str) -> tuple[Verdict | None, DmarcRecord | None]:
    """The record for `domain` or else its organizational domain's (RFC 7489 6.6.3):
    (None, record); (NONE, None) when neither publishes one; (TEMPERROR or PERMERROR,
    None) when a lookup failed or the records are not usable."""
    org = organizational(domain)
    for name in dict.fromkeys((domain, org)):
        try:
            texts = [t for t in lookup(f"_dmarc.{name}", "TXT") if t.startswith("v=DMARC1")]
        except TempDnsError:
            return Verdict.TEMPERROR, None
        if not texts:
            continue
        record = parse_record(texts[0]) if len(texts) == 1 else None
        if record is None:
            return Verdict.PERMERROR, None
        if name != domain:
            sp = _tag(texts[0], "sp")
            if sp in POLICIES:
                record = DmarcRecord(sp, record.adkim, record.aspf)
        return None, record
    return Verdict.NONE, None


def _tag(text: str, key: str) -> str:
    for part in text.split(";"):
        k, _, v = part.strip().partition("=")
        if k.strip().lower() == key:
            return v.strip().lower()
    return ""


def check_dmarc(
    lookup: Lookup,
    message: bytes,
    spf: Verdict,
    spf_domain: str,
    dkims: list[tuple[Verdict, str]],
) -> tuple[Verdict, str, str]:
    """(verdict, policy, why): pass if SPF passed for an aligned domain or a DKIM
    signature passed with an aligned d=; the policy is what the record asks of a fail."""
    domain = from_domain(message)
    if domain is None:
        return Verdict.PERMERROR, "", "From: not exactly one address"
    error, record = find_record(lookup, domain)
    if record is None:
        assert error is not None
        return error, "", f"_dmarc.{domain}: {error.value}"
    if spf is Verdict.PASS and aligned(spf_domain, domain, record.aspf):
        return Verdict.PASS, record.policy, ""
    for verdict, d in dkims:
        if verdict is Verdict.PASS and aligned(d, domain, record.adkim):
            return Verdict.PASS, record.policy, ""
    return Verdict.FAIL, record.policy, f"no aligned pass for {domain}"
