"""Mail refused for good further on: the messages that leave `lost` for `refused_downstream`.

A relay (a backup MX, a Postfix under test) accepted them and a provider beyond it refused
them for good, so their sender got a bounce (a DSN): a deliverability failure, visible in
the refusals journal, not mail that silently vanished. Decided by the reply's code, never
its text: a 5xx is for good; a 4xx is not (the MTA retries; what is left at the end is
stranded if still queued, else lost). A refusal at MAIL or RCPT names no msg_id (the sink
has not seen the headers yet), so that mail stays lost (docs/metrics.md, "Known limits").
"""

from __future__ import annotations

import pandas as pd


def refused_for_good(relay: pd.DataFrame, refusals: pd.DataFrame) -> frozenset[str]:
    """The msg_ids a backup MX journaled `bounced` for (its upstream refused them for good)
    and those a sink refused with a 5xx, its refusals row naming the msg_id."""
    ids: set[str] = set()
    if len(relay) and {"event", "msg_id"} <= set(relay.columns):
        ids.update(relay.loc[relay["event"] == "bounced", "msg_id"].astype(str))
    if len(refusals) and {"code", "msg_id"} <= set(refusals.columns):
        code = pd.to_numeric(refusals["code"], errors="coerce")
        msg_id = refusals["msg_id"].fillna("").astype(str)
        ids.update(msg_id[(code >= 500) & (code < 600) & (msg_id != "")])
    return frozenset(ids)
