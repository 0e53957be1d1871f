"""One row per message: what the client concluded, joined with what the sinks received."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class Counts:
    planned: int
    attempted: int
    accepted: int  # the client's final word was a 2xx after DATA
    failed: int  # attempted, final word not a 2xx (rejected, gave up, interrupted)
    received_unique: int  # messages some sink has (accepted or dropped before the reply)
    lost: int  # accepted by the client's account, received by no sink
    duplicates: int  # messages received more than once
    phantom: int  # received, but the client counted them failed (RFC 1047)
    stranded: int  # accepted by a backup MX (or MTA under test), still in its queue at the end
    not_sent: int  # planned, never attempted by the end
    in_flight: int  # attempted, no final word when the run ended

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def messages(attempts: pd.DataFrame, receipts: pd.DataFrame) -> pd.DataFrame:
    """Per message: attempts, final outcome, server, times, and receipt counts per sink."""
    if attempts.empty:
        per = pd.DataFrame(
            columns=["attempts", "final_outcome", "accepted_by", "intended", "first_start",
                     "final_end", "finished", "accepted"]
        )  # fmt: skip
    else:
        ordered = attempts.sort_values(["msg_id", "attempt", "start"])
        last = ordered.groupby("msg_id").tail(1).set_index("msg_id")
        accepted = ordered[ordered["outcome"] == "accepted"].groupby("msg_id")
        per = pd.DataFrame(
            {
                "attempts": ordered.groupby("msg_id").size(),
                "final_outcome": last["outcome"],
                "finished": last["final"].fillna(1).astype(bool) if "final" in last else True,
                "intended": ordered.groupby("msg_id")["intended"].min(),
                "first_start": ordered.groupby("msg_id")["start"].min(),
                "final_end": last["end"],
            }
        )
        per["accepted"] = accepted.size().reindex(per.index, fill_value=0) > 0
        per["accepted_by"] = accepted["server"].first().reindex(per.index)
        per["accepted_end"] = accepted["end"].min().reindex(per.index)
    if receipts.empty:
        per["received"] = 0
        per["queued"] = 0
        return per
    # A backup MX's "queued" receipt is a relay hop, not a delivery: the message counts
    # where it finally lands, so forwarding it is not a duplicate.
    hop = receipts["outcome"] == "queued" if "outcome" in receipts else False
    copies = receipts[~hop].groupby("msg_id").size()
    queued = receipts[hop].groupby("msg_id").size()
    per = per.join(copies.rename("received"), how="outer")
    per = per.join(queued.rename("queued"), how="outer")
    per["received"] = per["received"].fillna(0).astype(int)
    per["queued"] = per["queued"].fillna(0).astype(int)
    per["attempts"] = per["attempts"].fillna(0).astype(int)
    per["accepted"] = per["accepted"].fillna(False).astype(bool)
    return per


def count(per: pd.DataFrame, planned: int, run_id: str = "") -> Counts:
    """The summary counts; with `run_id`, receipts of other runs are left out."""
    if run_id and len(per):
        per = per[per.index.astype(str).str.startswith(f"{run_id}-")]
    if per.empty:
        return Counts(planned, 0, 0, 0, 0, 0, 0, 0, 0, planned, 0)
    attempted = per["attempts"] > 0
    accepted = attempted & per["accepted"].astype(bool)
    finished = per["finished"].fillna(True).astype(bool)
    failed = attempted & ~accepted & finished
    in_flight = attempted & ~accepted & ~finished
    received = per["received"]
    queued = per.get("queued", 0)
    return Counts(
        planned=planned,
        attempted=int(attempted.sum()),
        accepted=int(accepted.sum()),
        failed=int(failed.sum()),
        received_unique=int((received > 0).sum()),
        lost=int((accepted & (received == 0) & (queued == 0)).sum()),
        duplicates=int((received > 1).sum()),
        phantom=int((failed & (received > 0)).sum()),
        stranded=int((accepted & (received == 0) & (queued > 0)).sum()),
        not_sent=max(0, planned - int(attempted.sum())),
        in_flight=int(in_flight.sum()),
    )
