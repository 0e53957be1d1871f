"""The Failover tab's DNS faults, as plain data: what the page offers when the scenario
has `dns:` (`offer`), a fault commanded from it checked by the rules a scheduled one is
checked by and made into the very request the orchestrator posts for a scheduled one
(`command`), and the DNS faults pending or in force shown with what they do (`in_force`).

Pure: no Locust, no HTTP; loadtest.failover_tab.routes sends the request to the run's DNS
server (its control API, the sinks' token), which journals the fault in faults-dns.csv
with `origin: command`, as a sink journals a fault started from the tab.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from loadtest.dns_fault_checks import check_dns_fault, senders_ask_elsewhere, served_names
from loadtest.dns_spec import DnsSpec
from loadtest.fault_event import DNS_TARGET, FaultEvent
from maildrill.dns.faults import KINDS
from maildrill.inputs import describe_errors
from sinks.control_client import ActiveFault

# A scheduled fault's own fields, and `start_at` (a fault sent ahead): a live fault starts
# now, so they have no place among its parameters.
NOT_PARAMS = ("at", "target", "kind", "duration", "start_at")
SHOWN = ("active", "pending")


def offer(dns: DnsSpec | None, resolver: str | None = None) -> dict[str, Any] | None:
    """The DNS form's choices: each kind with what it does, and the names the zones serve
    (a fault scoped to another name would change nothing); None without `dns:` (no DNS
    server runs, so the tab offers no DNS faults) or when the senders ask another
    `resolver` (a fault on the run's server would measure nothing)."""
    if dns is None or senders_ask_elsewhere(resolver) is not None:
        return None
    zones = dns.build(allow_remote=True)
    addressed = sorted({r.name for z in zones for r in z.records if r.rtype in ("A", "AAAA")})
    return {
        "kinds": [{"kind": k, "summary": KINDS[k].summary} for k in sorted(KINDS)],
        "names": sorted(served_names(zones)),
        "addressed": addressed,
    }


def command(
    dns: DnsSpec | None,
    body: Mapping[str, Any],
    *,
    resolver: str | None = None,
    allow_remote: bool = False,
) -> dict[str, Any]:
    """The DNS server's control request for the tab's `{kind, duration, params}`; a
    ValueError of one line when the scenario has no `dns:`, its senders ask another
    `resolver`, or the fault would be refused, change nothing or send mail off this
    machine without `allow_remote` (loadtest.dns_fault_checks, as for `faults:` with
    `target: dns`)."""
    if dns is None:
        raise ValueError("the scenario has no dns: section: no DNS server runs to fault")
    if (elsewhere := senders_ask_elsewhere(resolver)) is not None:
        raise ValueError(elsewhere)
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not a DNS fault; known: {', '.join(sorted(KINDS))}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params: expected a JSON object")
    misplaced = sorted(k for k in params if k in NOT_PARAMS)
    if misplaced:
        raise ValueError(f"params: {', '.join(misplaced)} not for a fault started now")
    fields: dict[str, Any] = {**params, "at": 0, "target": DNS_TARGET, "kind": kind}
    if body.get("duration") not in (None, ""):
        fields["duration"] = body["duration"]
    where = f"{kind} on dns"
    try:
        event = FaultEvent.model_validate(fields)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_errors(exc)}") from None
    check_dns_fault(dns, event, where, allow_remote=allow_remote)
    return event.body()


def in_force(faults: Sequence[ActiveFault], t0: float) -> list[dict[str, Any]]:
    """The DNS faults pending or in force, each with what it does in one line (`scope`)
    and its window in seconds from t0 (none before the campaign starts)."""

    def at(epoch: float | None) -> float | None:
        return None if epoch is None or not t0 else round(epoch - t0, 3)

    return [
        {
            "id": f.id,
            "kind": f.kind,
            "origin": f.origin,
            "state": f.state,
            "scope": scope(f.kind, f.params, f.probability),
            "start_s": at(f.started if f.started is not None else f.start_at),
            "end_s": at(f.until),
        }
        for f in faults
        if f.state in SHOWN
    ]


def scope(kind: str, params: Mapping[str, Any], probability: float = 1.0) -> str:
    """What a DNS fault does, as its parameters say: the records it serves, or the names
    and types it answers for (and how late, how often)."""
    if kind == "records":
        parts = [
            _record_sets(str(name), sets) for name, sets in (params.get("records") or {}).items()
        ]
        return "; ".join(parts)
    names = ", ".join(params.get("names") or ()) or "every name"
    types = ", ".join(str(t).upper() for t in params.get("types") or ())
    text = names + (f" ({types})" if types else "")
    if kind == "latency":
        text += f", {params.get('ms')} ms late"
    if probability < 1.0:
        text += f", {probability:g} of answers"
    return text


def _record_sets(name: str, sets: Any) -> str:
    if not isinstance(sets, Mapping):
        return name
    parts = []
    for rtype, values in sets.items():
        if rtype == "ttl":
            continue
        shown = values if isinstance(values, list) else [values]
        parts.append(f"{rtype} " + (", ".join(map(str, shown)) if shown else "removed"))
    ttl = f" (TTL {sets['ttl']} s)" if "ttl" in sets else ""
    return f"{name.removesuffix('.')} → {'; '.join(parts)}{ttl}"
