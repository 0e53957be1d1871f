"""How the senders followed the run's DNS: per change of a record (a `records` fault's
start, and its end, the switch back), how long until the first and the last sender sent
to the new address, and the attempts still sent to the old one; per fault of the DNS
server, the mail a failed lookup deferred (`deferred` at phase `dns`).

Pure: from the faults journal (faults-dns.csv's rows, sink `dns`) and the attempts
journal (`addr`, `dns_name`, `worker`). A sender is a Locust process: each keeps its own
DNS cache, so each follows on its own, once its cached answer expires; the last to
follow is what a TTL bounds. Which addresses are new needs no copy of the zones: a
change's are the fault's records, and a switch back's any address of those names but
the fault's (the zone's, or a later fault's, served again).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow, fault_windows
from loadtest.analysis.summary_model import Dns, DnsChange, DnsFaultWindow
from loadtest.fault_event import DNS_TARGET

RECORDS = "records"
ADDRESS_TYPES = ("A", "AAAA")
DNS_PHASE = "dns"


@dataclass(frozen=True)
class Edge:
    """A change of the addresses of `names`: `to_fault` (the fault's start: its
    addresses are the new ones) or not (its end: they are the old ones)."""

    fault_id: str
    at: float
    names: frozenset[str]
    fault_addresses: frozenset[str]
    to_fault: bool

    def follows(self, addr: str) -> bool:
        return (addr in self.fault_addresses) == self.to_fault


def summarise(faults: pd.DataFrame, attempts: pd.DataFrame, t0: float) -> Dns:
    """The `dns` part of the summary for a run that served DNS."""
    dns_faults = faults[faults["sink"] == DNS_TARGET] if len(faults) else faults
    edges = _edges(dns_faults)
    changes = [_followed(edge, _next_at(edge, edges), attempts, t0) for edge in edges]
    windows = [_deferred(w, attempts, t0) for w in fault_windows(dns_faults)]
    lasts = [c.last_follow_s for c in changes if c.last_follow_s is not None]
    deferred = _dns_deferred(attempts)
    return Dns(
        changes=changes,
        faults=windows,
        follow_s=max(lasts) if lasts and len(lasts) == len(changes) else None,
        stale_attempts=sum(c.stale_attempts for c in changes),
        deferred=int(deferred["msg_id"].nunique()) if len(deferred) else 0,
    )


def rows(faults: pd.DataFrame, attempts: pd.DataFrame) -> pd.DataFrame:
    """The attempts `summarise` reads (those at a name a records fault changed, and those
    a failed lookup deferred), with the columns it reads: what a
    share of the messages keeps for it, put together with the others' (the same figures
    as all the attempts give: every figure is a count, an extreme or a set).

    In a run whose records fault moved the MX, that is about every attempt: each row is
    kept small. Its text stays categories (added by `tally.joined`), and only a deferred
    row keeps its message id (counted per message; the others' are never read)."""
    dns_faults = faults[faults["sink"] == DNS_TARGET] if len(faults) else faults
    names = frozenset().union(*(e.names for e in _edges(dns_faults)))
    at_names = _at_names(attempts, names).index
    deferred = _dns_deferred(attempts).index
    keep = attempts.index.isin(at_names.union(deferred))
    columns = ["dns_name", "addr", "start", "worker", "outcome", "phase", "msg_id"]
    kept = attempts.loc[keep, [c for c in columns if c in attempts]]
    if "msg_id" in kept:
        ids = kept["msg_id"].astype(object).where(kept.index.isin(deferred), None)
        kept = kept.assign(msg_id=ids.astype("category"))
    return kept


def _edges(faults: pd.DataFrame) -> list[Edge]:
    """Each records fault's start and stop that changed an address, in order of time."""
    if faults.empty:
        return []
    rows = faults[faults["kind"] == RECORDS].sort_values("time", kind="stable")
    started: dict[str, Edge] = {}
    edges: list[Edge] = []
    for row in rows.itertuples(index=False):
        fault_id = str(row.fault_id)
        if row.state == "start" and fault_id not in started:
            names, addresses = _addresses(str(row.params))
            if names:
                started[fault_id] = Edge(fault_id, float(row.time), names, addresses, True)
                edges.append(started[fault_id])
        elif row.state == "stop" and fault_id in started:
            edge = started.pop(fault_id)
            edges.append(Edge(fault_id, float(row.time), edge.names, edge.fault_addresses, False))
    return sorted(edges, key=lambda e: e.at)


def _addresses(params: str) -> tuple[frozenset[str], frozenset[str]]:
    """The names a records fault gives A/AAAA records, and those addresses."""
    try:
        records = json.loads(params or "{}").get("records") or {}
    except (ValueError, AttributeError):
        return frozenset(), frozenset()
    names: set[str] = set()
    addresses: set[str] = set()
    for name, types in records.items():
        if not isinstance(types, dict):
            continue
        for rtype in ADDRESS_TYPES:
            values = types.get(rtype)
            if values is None:
                continue
            names.add(str(name).removesuffix(".").lower())
            addresses.update(str(v) for v in (values if isinstance(values, list) else [values]))
    return frozenset(names), frozenset(addresses)


def _next_at(edge: Edge, edges: list[Edge]) -> float:
    """When the next change of any of the same names comes (the end of this one's count)."""
    later = [e.at for e in edges if e.at > edge.at and e.names & edge.names]
    return min(later, default=math.inf)


def _followed(edge: Edge, until: float, attempts: pd.DataFrame, t0: float) -> DnsChange:
    """The senders' attempts at the changed names from the change to the next one."""
    after = _at_names(attempts, edge.names)
    after = after[(after["start"] >= edge.at) & (after["start"] < until)]
    following = after["addr"].astype(str).map(edge.follows)
    first_follow = after.loc[following, "start"].min() if following.any() else None
    stale = after[~following]
    per_sender: list[float | None] = []
    for _, sent in after.groupby(after["worker"].astype(str), sort=True):
        follow = sent["addr"].astype(str).map(edge.follows)
        last_old = sent.loc[~follow, "start"].max() if (~follow).any() else -math.inf
        new = sent.loc[follow & (sent["start"] > last_old), "start"]
        per_sender.append(float(new.min()) if len(new) else None)
    followed = [v for v in per_sender if v is not None]
    every = len(followed) == len(per_sender) and followed
    return DnsChange(
        fault_id=edge.fault_id,
        edge="change" if edge.to_fault else "switch_back",
        at_s=round(edge.at - t0, 3),
        names=sorted(edge.names),
        addresses=sorted(_new_addresses(edge, attempts)),
        senders=len(per_sender),
        first_follow_s=_since(first_follow, edge.at),
        last_follow_s=_since(max(followed), edge.at) if every else None,
        last_stale_s=_since(stale["start"].max(), edge.at) if len(stale) else None,
        stale_attempts=len(stale),
        not_followed=len(per_sender) - len(followed),
    )


def _new_addresses(edge: Edge, attempts: pd.DataFrame) -> set[str]:
    """A change's: the fault's records; a switch back's: the addresses those names had in
    the attempts journal that are not the fault's."""
    if edge.to_fault:
        return set(edge.fault_addresses)
    seen = set(_at_names(attempts, edge.names)["addr"].astype(str))
    return {a for a in seen if a and a not in edge.fault_addresses}


def _at_names(attempts: pd.DataFrame, names: frozenset[str]) -> pd.DataFrame:
    """Attempts whose address came from looking one of `names` up."""
    if not len(attempts) or "dns_name" not in attempts or "addr" not in attempts:
        return attempts.iloc[:0].assign(addr="", dns_name="", worker="")
    looked_up = attempts["dns_name"].fillna("").astype(str).str.removesuffix(".").str.lower()
    return attempts[looked_up.isin(names) & (attempts["addr"].fillna("").astype(str) != "")]


def _dns_deferred(attempts: pd.DataFrame) -> pd.DataFrame:
    """Attempts a failed lookup deferred (a temporary DNS failure: 4.4.3)."""
    if not len(attempts) or "phase" not in attempts:
        return attempts.iloc[:0]
    return attempts[(attempts["outcome"] == "deferred") & (attempts["phase"] == DNS_PHASE)]


def _deferred(window: FaultWindow, attempts: pd.DataFrame, t0: float) -> DnsFaultWindow:
    """The messages and attempts deferred at phase dns that started in the window."""
    deferred = _dns_deferred(attempts)
    end = window.cleared if window.cleared is not None else math.inf
    inside = deferred[(deferred["start"] >= window.onset) & (deferred["start"] <= end)]
    return DnsFaultWindow(
        fault_id=window.fault_id,
        kind=window.kind,
        onset_s=round(window.onset - t0, 3),
        cleared_s=round(window.cleared - t0, 3) if window.cleared is not None else None,
        deferred_messages=int(inside["msg_id"].nunique()) if len(inside) else 0,
        deferred_attempts=len(inside),
    )


def _since(moment: object, at: float) -> float | None:
    """Seconds from `at` to `moment`, to the millisecond; None for no moment."""
    if moment is None or pd.isna(moment):
        return None
    return round(float(moment) - at, 3)  # type: ignore[arg-type]
