"""Mail through real MTAs under test: from the client's 250 at the MTA to the receipt at a
downstream sink, per MTA and per path (MTA to the sink standing in for a provider):
delivered, delay, duplicated, stranded, drain time after an outage (the summary's
`MtaDelivery` and its `MtaPath`s)."""

from __future__ import annotations

import pandas as pd

from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.metrics import percentiles_ms
from loadtest.analysis.reconcile import duplicated
from loadtest.analysis.summary_model import MtaDelivery, MtaPath


def summarise(
    attempts: pd.DataFrame,
    receipts: pd.DataFrame,
    per: pd.DataFrame,
    mta_queue: pd.DataFrame,
    mtas: set[str],
    windows: list[FaultWindow],
) -> dict[str, MtaDelivery]:
    if not mtas or attempts.empty:
        return {}
    ok = attempts[(attempts["outcome"] == "accepted") & attempts["server"].isin(mtas)]
    final = (
        receipts[receipts["outcome"].isin(("accepted", "dropped"))]
        if "outcome" in receipts
        else receipts
    )
    first = final.groupby("msg_id")["time"].min()
    dup = duplicated(per) if len(per) else pd.Series(dtype=bool)
    stuck = mta_queue.groupby("mta")["msg_id"].apply(set).to_dict() if len(mta_queue) else {}
    out: dict[str, MtaDelivery] = {}
    for mta in sorted(mtas):
        accepted_at = ok[ok["server"] == mta].groupby("msg_id")["end"].min()
        ids = accepted_at.index
        delivered = ids.intersection(first.index)
        delay = (first[delivered] - accepted_at[delivered]).clip(lower=0)
        out[mta] = MtaDelivery(
            accepted=len(ids),
            delivered=len(delivered),
            duplicated=int(dup.reindex(ids, fill_value=False).sum()),
            stranded=len(set(ids) & stuck.get(mta, set())),
            undelivered=len(ids) - len(delivered),
            delivery_delay_ms=percentiles_ms(delay),
            drain_s=_drain_s(mta, accepted_at, first, windows),
            paths=_paths(final[final["msg_id"].isin(ids)], accepted_at),
        )
    return out


def _drain_s(
    mta: str, accepted_at: pd.Series, first: pd.Series, windows: list[FaultWindow]
) -> float | None:
    """From the MTA's recovery to the last delivery of what it held through the outage."""
    drain_s = None
    for w in windows:
        if w.target != mta or w.cleared is None:
            continue
        held = accepted_at[accepted_at < w.onset].index.intersection(first.index)
        after = first[held][first[held] >= w.cleared]
        if len(after):
            drain_s = round(float(after.max() - w.cleared), 6)
    return drain_s


def _paths(final: pd.DataFrame, accepted_at: pd.Series) -> dict[str, MtaPath]:
    """Per downstream sink: messages, receipts, delay from the client's 250, and which
    relay (EHLO name) delivered them (left out, not measured, without a helo column)."""
    paths: dict[str, MtaPath] = {}
    for sink, rows in final.groupby("sink"):
        first = rows.groupby("msg_id")["time"].min()
        delay = (first - accepted_at.reindex(first.index)).dropna().clip(lower=0)
        path = MtaPath(
            messages=len(first), receipts=len(rows), delivery_delay_ms=percentiles_ms(delay)
        )
        if "helo" in rows:
            counts = rows["helo"].value_counts()  # held as categories: every name, even at 0
            path.relayed_by = {str(k): int(v) for k, v in counts.items() if v}
        paths[str(sink)] = path
    return paths
