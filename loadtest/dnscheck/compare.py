"""What in the gathered DNS facts would hurt deliverability after a failover (pure).

A `Finding` is something a provider would hold against mail from that server (or from
every server, `server == ""`): SPF not passing, a DKIM key missing or not the one signed
with, no DMARC policy, no reverse DNS, no MX. Any finding makes `maildrill check --dns`
exit 1. Notes are worth knowing and hurt nothing (p=none, a server that does not sign).
Each finding says the server and the record, in one line, with a stable `code`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from loadtest.dnscheck.facts import DkimFacts, DnsFacts, SenderFacts
from loadtest.dnscheck.public_keys import record_tags
from sinks.authcheck.dmarc import aligned

SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: more is a permerror for every sender
DMARC_POLICIES = ("none", "quarantine", "reject")
ABSENT = ("nxdomain", "nodata")
TEMPERROR = "temperror"


@dataclass(frozen=True)
class Finding:
    code: str  # stable, e.g. spf-not-covered
    server: str  # "" for the domain as a whole
    message: str  # one line, for people


@dataclass
class Comparison:
    domain: str
    findings: list[Finding]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.findings


def compare(facts: DnsFacts) -> Comparison:
    """Findings and notes: the domain's records first, then each server in order."""
    findings: list[Finding] = []
    notes: list[str] = []
    for found, said in (_mx(facts), _spf_record(facts), _dmarc(facts)):
        findings += found
        notes += said
    spf_usable = not any(f.code.startswith("spf-") for f in findings)
    for sender in facts.senders:
        found, said = _sender(facts, sender, spf_usable)
        findings += found
        notes += said
    return Comparison(facts.domain, findings, notes)


# -- the domain ----------------------------------------------------------------------------


def _mx(facts: DnsFacts) -> tuple[list[Finding], list[str]]:
    d, mx = facts.domain, facts.mx
    if mx.status == TEMPERROR:
        return [Finding("mx-temperror", "", f"{d} MX: no answer ({mx.detail})")], []
    if mx.status in ABSENT or not mx.records:
        return [
            Finding(
                "mx-missing",
                "",
                f"{d} has no MX record: replies and bounces to it have nowhere to go, and "
                "providers refuse senders whose domain takes no mail",
            )
        ], []
    found: list[Finding] = []
    notes: list[str] = []
    if any(not host for _, host in mx.records):
        found.append(
            Finding(
                "mx-null",
                "",
                f"{d} has a null MX (RFC 7505): it says it takes no mail, "
                "and providers may refuse mail from it",
            )
        )
    for preference, host in mx.records:
        if host and not mx.addresses.get(host):
            found.append(
                Finding("mx-unresolved", "", f"{d} MX {preference} {host}: {host} has no address")
            )
    # The scenario's order (priority) against the MX preferences, for the servers that are MXs.
    ranked = [(s, _mx_preference(facts, s)) for s in facts.senders]
    in_mx = sorted(((s, p) for s, p in ranked if p is not None), key=lambda sp: sp[0].priority)
    for i, (first, p_first) in enumerate(in_mx):
        for second, p_second in in_mx[i + 1 :]:
            if first.priority < second.priority and p_second < p_first:
                found.append(
                    Finding(
                        "mx-order",
                        second.name,
                        f"{d} MX prefers {second.name} ({p_second}) to {first.name} "
                        f"({p_first}), the scenario's preferred server: mail goes to "
                        f"{second.name} first",
                    )
                )
    notes += [f"{s.name} ({s.address}) is not among {d}'s MX hosts" for s, p in ranked if p is None]
    return found, notes


def _mx_preference(facts: DnsFacts, sender: SenderFacts) -> int | None:
    found = mx_of(facts, sender)
    return None if found is None else found[0]


def mx_of(facts: DnsFacts, sender: SenderFacts) -> tuple[int, str] | None:
    """The MX (preference, host) that is this server, by its address or HELO name."""
    address = ipaddress.ip_address(sender.address)
    for preference, host in facts.mx.records:
        addresses = {ipaddress.ip_address(a) for a in facts.mx.addresses.get(host, [])}
        if address in addresses or (host and host == sender.helo_name.lower()):
            return preference, host
    return None


def _spf_record(facts: DnsFacts) -> tuple[list[Finding], list[str]]:
    d, spf = facts.domain, facts.spf
    if spf.status == TEMPERROR:
        return [Finding("spf-temperror", "", f"{d} TXT: no answer: SPF is a temperror")], []
    if not spf.records:
        return [
            Finding("spf-missing", "", f"{d} publishes no SPF record: no server is covered")
        ], []
    if len(spf.records) > 1:
        return [
            Finding(
                "spf-multiple",
                "",
                f"{d} publishes {len(spf.records)} SPF records: a permerror for every server "
                "(RFC 7208 4.5)",
            )
        ], []
    notes = [f"SPF lookups may be more than counted: {spf.problem}"] if spf.problem else []
    if spf.lookups > SPF_LOOKUP_LIMIT:
        return [
            Finding(
                "spf-lookups",
                "",
                f"{d}'s SPF takes {spf.lookups} DNS lookups, over the limit of "
                f"{SPF_LOOKUP_LIMIT} (RFC 7208 4.6.4): a permerror for servers matched past it",
            )
        ], notes
    return [], notes


def _dmarc(facts: DnsFacts) -> tuple[list[Finding], list[str]]:
    d, dmarc = facts.domain, facts.dmarc
    where = f"_dmarc.{d}"
    if dmarc.status == TEMPERROR:
        return [Finding("dmarc-temperror", "", f"{where} TXT: no answer ({dmarc.detail})")], []
    if not dmarc.records:
        return [
            Finding(
                "dmarc-missing",
                "",
                f"{d} publishes no DMARC record ({where}): Gmail and Yahoo require one of "
                "bulk senders",
            )
        ], []
    if len(dmarc.records) > 1:
        return [
            Finding(
                "dmarc-multiple",
                "",
                f"{where} holds {len(dmarc.records)} DMARC records: "
                "receivers apply none (RFC 7489 6.6.3)",
            )
        ], []
    policy = record_tags(dmarc.records[0]).get("p", "").lower()
    if policy not in DMARC_POLICIES:
        shown = f"p={policy}" if policy else "no p="
        return [
            Finding("dmarc-invalid", "", f"{where}: {shown}, not none, quarantine or reject")
        ], []
    if policy == "none":
        return [], [f"{d}'s DMARC policy is p=none: failing mail is reported, not refused"]
    return [], []


# -- each server -----------------------------------------------------------------------------


def _sender(facts: DnsFacts, s: SenderFacts, spf_usable: bool) -> tuple[list[Finding], list[str]]:
    found: list[Finding] = []
    notes: list[str] = []

    def finding(code: str, message: str) -> None:
        found.append(Finding(code, s.name, message))

    who = f"{s.name} ({s.address})"
    if spf_usable and s.spf == TEMPERROR:
        finding("spf-temperror", f"{who}: SPF temperror: {s.spf_explanation}")
    elif spf_usable and s.spf != "pass":
        finding(
            "spf-not-covered",
            f"{who} is not covered by {facts.domain}'s SPF ({s.spf}): its mail fails SPF",
        )
    if not s.dkim:
        notes.append(f"{s.name} names no DKIM selector: DMARC rests on SPF alone for its mail")
    for key in s.dkim:
        found += [Finding(code, s.name, text) for code, text in _dkim(who, key)]
        if not aligned(key.domain, facts.domain, "r"):
            notes.append(
                f"{s.name} signs as d={key.domain}, which does not align with "
                f"{facts.domain} for DMARC"
            )
    policy = dmarc_policy(facts)
    if policy in ("quarantine", "reject") and not dmarc_passes(facts, s):
        fate = "refused" if policy == "reject" else "sent to spam"
        finding(
            "dmarc-fail",
            f"{who}: neither SPF nor an aligned DKIM key passes: its mail fails DMARC "
            f"(p={policy}: {fate})",
        )
    ptr = s.ptr
    if ptr.status == TEMPERROR:
        finding("ptr-temperror", f"{who}: PTR lookup: no answer")
    elif not ptr.names:
        finding("ptr-missing", f"{who} has no PTR record: Gmail refuses its mail (550 5.7.25)")
    elif not ptr.confirmed:
        finding(
            "ptr-not-confirmed",
            f"{who}: its PTR {ptr.names[0]} does not resolve back to {s.address}: "
            "no forward-confirmed reverse DNS (Gmail 550 5.7.25)",
        )
    elif s.helo_name and s.helo_name.lower() not in ptr.confirmed:
        finding(
            "ptr-helo-mismatch",
            f"{who}: HELO {s.helo_name} is not its PTR name {ptr.confirmed[0]}",
        )
    if not s.helo_name:
        notes.append(f"{s.name}'s HELO name is not known: PTR checked without it")
    return found, notes


def dmarc_policy(facts: DnsFacts) -> str | None:
    """p= of the one usable DMARC record; None without one."""
    if len(facts.dmarc.records) != 1:
        return None
    policy = record_tags(facts.dmarc.records[0]).get("p", "").lower()
    return policy if policy in DMARC_POLICIES else None


def dmarc_passes(facts: DnsFacts, s: SenderFacts) -> list[str]:
    """What would carry DMARC for this server's mail (RFC 7489 4.2): "SPF" (the envelope
    sender is postmaster@DOMAIN, aligned by construction), "DKIM" (a selector published,
    its key not known to differ, its d= aligned under adkim); [] when nothing would."""
    records = facts.dmarc.records
    adkim = record_tags(records[0]).get("adkim", "r").lower() if len(records) == 1 else "r"
    mode = "s" if adkim == "s" else "r"
    out = ["SPF"] if s.spf == "pass" else []
    if any(
        key.status == "ok"
        and key.record
        and not key.problem
        and key.key_matches is not False
        and aligned(key.domain, facts.domain, mode)
        for key in s.dkim
    ):
        out.append("DKIM")
    return out


def _dkim(who: str, key: DkimFacts) -> list[tuple[str, str]]:
    if key.status == TEMPERROR:
        return [("dkim-temperror", f"{who}: DKIM key {key.name}: no answer")]
    if key.status in ABSENT or not key.record:
        return [
            (
                "dkim-missing",
                f"{who} signs with selector {key.selector} but {key.name} is not published: "
                "its DKIM signatures fail",
            )
        ]
    if key.problem:
        return [("dkim-invalid", f"{who}: DKIM key {key.name}: {key.problem}")]
    if key.key_matches is False:
        return [
            (
                "dkim-mismatch",
                f"{who}: {key.name} publishes a key other than the one it signs with: "
                "its DKIM signatures fail",
            )
        ]
    return []
