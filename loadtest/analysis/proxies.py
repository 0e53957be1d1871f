"""Fault proxies (sink mode proxy): what went through them, and what the server behind
answered. For a server maildrill does not own, the proxy is the only witness of what it
accepted: its 250 to the final dot, seen on the wire, stands in for a sink's receipt.
Each proxy's record is the summary's `FaultProxy`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis.summary_model import FaultProxy

# What ends a session without a fault (sinks.proxy): a message pending then takes it as
# its cause, which is not a cut by a fault.
SESSION_ENDS = frozenset({"client", "server", "stop", "error"})


def _reply_class(code: pd.Series) -> pd.Series:
    klass = (code // 100).map({2: "2xx", 4: "4xx", 5: "5xx"})
    return klass.fillna("no reply")


def summarise(proxy: pd.DataFrame, upstream_of: dict[str, str]) -> dict[str, FaultProxy]:
    """Per proxy: sessions and how they ended, messages by the server's reply, messages a
    fault cut (and of those, how many the server had already accepted), bytes each way."""
    if proxy.empty:
        return {}
    out: dict[str, FaultProxy] = {}
    for name, rows in proxy.groupby("proxy"):
        closes = rows[rows["event"] == "close"]
        messages = rows[rows["event"] == "message"]
        cause = messages["cause"].fillna("")
        by_fault = (cause != "") & ~cause.isin(list(SESSION_ENDS))
        cut = messages[by_fault]
        accepted = messages["code"].between(200, 299)
        out[str(name)] = FaultProxy(
            upstream=upstream_of.get(str(name)),
            sessions=int((rows["event"] == "open").sum()),
            sessions_ended_by=_counts(closes["cause"].replace("", "unknown")),
            messages=len(messages),
            server_replies=_counts(_reply_class(messages["code"])),
            cut_by_fault=_counts(cut["cause"]),
            accepted_then_cut=int((accepted & by_fault).sum()),
            unanswered_at_session_end=int(((cause != "") & ~by_fault).sum()),
            bytes_up=int(np.nansum(closes["bytes_up"].to_numpy(dtype=float))),
            bytes_down=int(np.nansum(closes["bytes_down"].to_numpy(dtype=float))),
        )
    return out


def witnessed_receipts(proxy: pd.DataFrame, blind_upstream: set[str]) -> pd.DataFrame:
    """Receipt rows for what the servers behind these proxies accepted (a 2xx to the dot
    went by), so the reconciliation can count them received, duplicated or phantom."""
    if proxy.empty or not blind_upstream:
        return pd.DataFrame()
    taken = proxy[
        (proxy["event"] == "message")
        & proxy["proxy"].isin(list(blind_upstream))
        & proxy["code"].between(200, 299)
    ]
    return pd.DataFrame(
        {
            "time": taken["time"].to_numpy(dtype=float),
            "sink": taken["proxy"].astype(str).to_numpy(),
            "session": taken["session"].astype(str).to_numpy(),
            "msg_id": taken["msg_id"].astype(str).to_numpy(),
            "size": taken["size"].to_numpy(dtype=float),
            "rcpt_count": np.nan,  # not on the wire record: duplicates then count receipts
            "outcome": "accepted",
            "helo": "",
        }
    )


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().items()}
