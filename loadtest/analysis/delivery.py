"""Mail through real MTAs under test: from the client's 250 at the MTA to the receipt at a
downstream sink, per MTA and per path (MTA to the sink standing in for a provider):
delivered, delay, duplicated, stranded, drain time after an outage (the summary's
`MtaDelivery` and its `MtaPath`s)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.histograms import Slots
from loadtest.analysis.reconcile import duplicated
from loadtest.analysis.summary_model import MtaDelivery, MtaPath, Percentiles
from loadtest.analysis.tally import ADD


@dataclass
class Path:
    """Mail an MTA delivered to one downstream sink, from a share of the messages."""

    messages: int = 0
    receipts: int = 0
    delay: Slots = field(default_factory=Slots)
    relayed_by: dict[str, int] | None = None  # receipts per EHLO name (None: not journaled)


def _last_each(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    return {k: max(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k, 0.0)) for k in a | b}


@dataclass
class Mta:
    """One MTA's counts over a share of the messages (added over shares)."""

    accepted: int = 0
    delivered: int = 0
    duplicated: int = 0
    stranded: int = 0
    delay: Slots = field(default_factory=Slots)
    # Per fault window of the MTA (by its place in the run's windows): the last delivery
    # of what it held through the outage, after its recovery (epoch seconds).
    last_held: dict[int, float] = field(default_factory=dict, metadata={ADD: _last_each})
    paths: dict[str, Path] = field(default_factory=dict)


def finish(counted: dict[str, Mta], windows: list[FaultWindow]) -> dict[str, MtaDelivery]:
    """The `mta` part, from every share's `tally` added."""
    out: dict[str, MtaDelivery] = {}
    for mta in sorted(counted):
        c = counted[mta]
        drain_s = None
        for i, w in enumerate(windows):  # the last fault with mail held through it
            if i in c.last_held and w.cleared is not None:
                drain_s = round(c.last_held[i] - w.cleared, 6)
        out[mta] = MtaDelivery(
            accepted=c.accepted,
            delivered=c.delivered,
            duplicated=c.duplicated,
            stranded=c.stranded,
            undelivered=c.accepted - c.delivered,
            delivery_delay_ms=Percentiles(**c.delay.percentiles_ms()),
            drain_s=drain_s,
            paths={sink: _path(path) for sink, path in sorted(c.paths.items())},
        )
    return out


def _path(path: Path) -> MtaPath:
    out = MtaPath(
        messages=path.messages,
        receipts=path.receipts,
        delivery_delay_ms=Percentiles(**path.delay.percentiles_ms()),
    )
    if path.relayed_by is not None:  # the most receipts first; a tie by name
        ranked = sorted(sorted(path.relayed_by.items()), key=lambda kv: -kv[1])
        out.relayed_by = {name: n for name, n in ranked if n}
    return out


def tally(
    attempts: pd.DataFrame,
    receipts: pd.DataFrame,
    per: pd.DataFrame,
    mta_queue: pd.DataFrame,
    mtas: set[str],
    windows: list[FaultWindow],
) -> dict[str, Mta]:
    """Each MTA's counts over these attempts and receipts (every row of their messages)."""
    if not mtas or attempts.empty:
        return {}
    ok = attempts[(attempts["outcome"] == "accepted") & attempts["server"].isin(mtas)]
    final = (
        receipts[receipts["outcome"].isin(("accepted", "dropped"))]
        if "outcome" in receipts
        else receipts
    )
    first = final.groupby("msg_id", observed=True)["time"].min()
    dup = duplicated(per) if len(per) else pd.Series(dtype=bool)
    stuck = mta_queue.groupby("mta")["msg_id"].apply(set).to_dict() if len(mta_queue) else {}
    out: dict[str, Mta] = {}
    for mta in sorted(mtas):
        accepted_at = ok[ok["server"] == mta].groupby("msg_id", observed=True)["end"].min()
        ids = accepted_at.index
        delivered = ids.intersection(first.index)
        delay = (first[delivered] - accepted_at[delivered]).clip(lower=0)
        out[mta] = Mta(
            accepted=len(ids),
            delivered=len(delivered),
            duplicated=int(dup.reindex(ids, fill_value=False).sum()),
            stranded=len(set(ids.astype(str)) & stuck.get(mta, set())),
            delay=Slots.of(delay.to_numpy(dtype=float)),
            last_held=_last_held(mta, accepted_at, first, windows),
            paths=_paths(final[final["msg_id"].isin(ids)], accepted_at),
        )
    return out


def _last_held(
    mta: str, accepted_at: pd.Series, first: pd.Series, windows: list[FaultWindow]
) -> dict[int, float]:
    """Per fault of the MTA's: the last delivery, after its recovery, of what it held
    through the outage (the drain time's end)."""
    out: dict[int, float] = {}
    for i, w in enumerate(windows):
        if w.target != mta or w.cleared is None:
            continue
        held = accepted_at[accepted_at < w.onset].index.intersection(first.index)
        after = first[held][first[held] >= w.cleared]
        if len(after):
            out[i] = float(after.max())
    return out


def _paths(final: pd.DataFrame, accepted_at: pd.Series) -> dict[str, Path]:
    """Per downstream sink: messages, receipts, delay from the client's 250, and which
    relay (EHLO name) delivered them (left out, not measured, without a helo column)."""
    paths: dict[str, Path] = {}
    for sink, rows in final.groupby("sink", observed=True):
        first = rows.groupby("msg_id", observed=True)["time"].min()
        delay = (first - accepted_at.reindex(first.index)).dropna().clip(lower=0)
        path = Path(
            messages=len(first), receipts=len(rows), delay=Slots.of(delay.to_numpy(dtype=float))
        )
        if "helo" in rows:
            counts = rows["helo"].astype(str).value_counts()
            path.relayed_by = {str(k): int(v) for k, v in counts.items() if v}
        paths[str(sink)] = path
    return paths
