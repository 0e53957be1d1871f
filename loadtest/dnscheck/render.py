"""`maildrill check --dns` output: the domain's records, the servers side by side, then
the findings (only reads the facts and the comparison)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from loadtest.dnscheck.compare import SPF_LOOKUP_LIMIT, Comparison, dmarc_passes, mx_of
from loadtest.dnscheck.facts import DkimFacts, DnsFacts, SenderFacts
from loadtest.side_by_side import LABEL, Row, side_by_side


def as_json(facts: DnsFacts, result: Comparison) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "domain": facts.domain,
        "findings": [asdict(f) for f in result.findings],
        "notes": result.notes,
        "facts": asdict(facts),
    }


def domain_lines(facts: DnsFacts) -> list[str]:
    mx = facts.mx
    if mx.records:
        hosts = [
            f"{p} {h} ({', '.join(mx.addresses.get(h, [])) or 'no address'})" if h else f"{p} ."
            for p, h in mx.records
        ]
        mx_text = ", ".join(hosts)
    else:
        mx_text = _absent(mx.status, mx.detail)
    spf = facts.spf
    if len(spf.records) == 1:
        spf_text = f"{spf.records[0]}  ({spf.lookups} of {SPF_LOOKUP_LIMIT} DNS lookups)"
    else:
        spf_text = f"{len(spf.records)} records" if spf.records else _absent(spf.status, "")
    dmarc = facts.dmarc
    where = f" (at _dmarc.{dmarc.domain})" if dmarc.domain and dmarc.domain != facts.domain else ""
    dmarc_text = " | ".join(dmarc.records) + where if dmarc.records else _absent(dmarc.status, "")
    return [
        f"{facts.domain}, from the scenario's zones served on {facts.resolver}"
        if facts.served
        else f"{facts.domain}, as {facts.resolver} answers",
        f"{'MX'.ljust(LABEL)}{mx_text}",
        f"{'SPF'.ljust(LABEL)}{spf_text}",
        f"{'DMARC'.ljust(LABEL)}{dmarc_text}",
    ]


def _absent(status: str, detail: str) -> str:
    return {"nxdomain": "none (no such name)", "nodata": "none"}.get(
        status, f"no answer ({detail})" if detail else status
    )


def rows(facts: DnsFacts) -> list[Row]:
    """(label, one cell per server, compared?) for the side-by-side table."""
    senders = facts.senders

    def mx(s: SenderFacts) -> str:
        found = mx_of(facts, s)
        return "not an MX" if found is None else f"{found[0]} {found[1]}"

    def ptr(s: SenderFacts) -> str:
        return ", ".join(s.ptr.names) or _absent(s.ptr.status, "")

    def confirmed(s: SenderFacts) -> str:
        if not s.ptr.names:
            return "-"
        return "yes" if s.ptr.confirmed else "NO"

    def helo(s: SenderFacts) -> str:
        if not s.helo_name:
            return "-"
        return ", ".join(s.ptr.helo_addresses) or _absent(s.ptr.helo_status, "")

    def dkim(s: SenderFacts) -> str:
        return ", ".join(f"{k.selector}: {_dkim(k)}" for k in s.dkim) or "no selector"

    def dmarc(s: SenderFacts) -> str:
        carried = dmarc_passes(facts, s)
        return f"pass ({', '.join(carried)})" if carried else "FAIL"

    return [
        ("address", [s.address for s in senders], False),
        ("HELO", [s.helo_name or "?" for s in senders], False),
        ("MX", [mx(s) for s in senders], False),
        ("SPF", [s.spf for s in senders], True),
        ("PTR", [ptr(s) for s in senders], False),
        ("PTR confirmed", [confirmed(s) for s in senders], True),
        ("HELO address", [helo(s) for s in senders], False),
        ("DKIM", [dkim(s) for s in senders], False),
        ("DMARC", [dmarc(s) for s in senders], True),
    ]


def _dkim(k: DkimFacts) -> str:
    if not k.record:
        return "MISSING" if k.status in ("nxdomain", "nodata") else k.status
    if k.problem:
        return "INVALID"
    return {True: "key matches", False: "KEY DIFFERS", None: "published"}[k.key_matches]


def render_text(facts: DnsFacts, result: Comparison) -> str:
    """The domain's records, the servers side by side ('*' marks a value that differs from
    the first server's, the primary's), the findings and notes."""
    lines = [*domain_lines(facts), ""]
    names = [f"{s.name} (reference)" if i == 0 else s.name for i, s in enumerate(facts.senders)]
    table = rows(facts)
    lines += side_by_side(names, table)
    lines.append("")
    if result.findings:
        n = len(result.findings)
        lines.append(
            f"{n} problem{'s' if n > 1 else ''} that would hurt deliverability after a failover:"
        )
        lines += [f"  ! {f.message}  [{f.code}]" for f in result.findings]
    else:
        lines.append(f"{facts.domain}: every server passes what providers check in DNS")
    if result.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in result.notes]
    return "\n".join(lines) + "\n"
