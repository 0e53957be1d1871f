"""Mail through real MTAs under test: from the client's 250 at the MTA to the receipt at a
downstream sink, per MTA (path): delivered, delay, duplicated, stranded, drain time."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.analysis.failover import FaultWindow
from loadtest.analysis.metrics import percentiles_ms


def summarise(
    attempts: pd.DataFrame,
    receipts: pd.DataFrame,
    mta_queue: pd.DataFrame,
    mtas: set[str],
    windows: list[FaultWindow],
) -> dict[str, Any]:
    if not mtas or attempts.empty:
        return {}
    ok = attempts[(attempts["outcome"] == "accepted") & attempts["server"].isin(mtas)]
    final = (
        receipts[receipts["outcome"].isin(("accepted", "dropped"))] if len(receipts) else (receipts)
    )
    copies = final.groupby("msg_id").size() if len(final) else pd.Series(dtype=int)
    first = final.groupby("msg_id")["time"].min() if len(final) else pd.Series(dtype=float)
    stuck = mta_queue.groupby("mta")["msg_id"].apply(set).to_dict() if len(mta_queue) else {}
    out: dict[str, Any] = {}
    for mta in sorted(mtas):
        accepted_at = ok[ok["server"] == mta].groupby("msg_id")["end"].min()
        ids = accepted_at.index
        delivered = ids.intersection(first.index)
        delay = (first[delivered] - accepted_at[delivered]).clip(lower=0)
        drain_s = None
        for w in windows:
            if w.target != mta or w.cleared is None:
                continue
            # What the MTA held through the outage, handed on after it came back.
            held = accepted_at[accepted_at < w.onset].index.intersection(first.index)
            after = first[held][first[held] >= w.cleared]
            if len(after):
                drain_s = round(float(after.max() - w.cleared), 6)
        out[mta] = {
            "accepted": len(ids),
            "delivered": len(delivered),
            "duplicated": int((copies.reindex(ids, fill_value=0) > 1).sum()),
            "stranded": len(set(ids) & stuck.get(mta, set())),
            "undelivered": len(ids) - len(delivered),
            "delivery_delay_ms": percentiles_ms(delay),
            "drain_s": drain_s,
        }
    return out
