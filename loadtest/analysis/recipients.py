"""Accounting per recipient: the summary's `recipients`, beside the per-message counts.

A message is one envelope with several recipients. An MTA splits it by destination (one
delivery per recipient domain), so its parts can meet different fates: delivered for one
domain and stranded in a queue for another, or one part delivered twice and another never.
Per message (reconcile.count) the first counts as received and the second as neither
duplicated nor lost. Here each recipient is followed on its own:

- the client's side: how many recipients each attempt named and how many were refused at
  RCPT (attempts.csv `recipients`, `recipients_refused`); a message's accepted recipients
  are the RCPT 250s of the attempt whose final dot got its 250 (reconcile's `recipients`);
- the sinks' side: which recipients each copy reached (receipts `rcpts`: the RCPT TO
  addresses a sink took), which a backup MX still holds (its `queued` receipt's `rcpts`,
  for a message never forwarded nor bounced), which a Postfix queue file still has to
  deliver at the end (mta-queue `rcpts`).

The fates, per accepted recipient, add up: delivered + stranded + unverified + lost =
accepted. `duplicated` counts apart. Each is defined in docs/metrics.md (Recipients). A
recipient refused at RCPT, 4xx or 5xx, is neither accepted nor lost (a bounce is counted
as one, not as mail that vanished).

Journals from before receipts named their recipients (or a proxy's witness row, which
knows none) leave a message to be counted from its numbers: its copies carry
`rcpt_count` recipients each (all of its accepted ones when unknown), delivered up to its
accepted count, the excess duplicated. That cannot see one part twice and another missing;
named recipients can.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from loadtest.analysis.summary_model import Recipients

ALL = None  # held recipients not named: all of the message's undelivered ones


def names(cell: object) -> list[str]:
    """The addresses of a journal's `rcpts` cell (space-separated; empty or NaN: none)."""
    return cell.split() if isinstance(cell, str) else []


def count(
    per: pd.DataFrame,
    attempts: pd.DataFrame,
    receipts: pd.DataFrame,
    mta_queue: pd.DataFrame,
    run_id: str = "",
    unobserved: frozenset[str] = frozenset(),
    released: frozenset[str] = frozenset(),
    bounced: frozenset[str] = frozenset(),
) -> Recipients:
    """summary.json's `recipients`. `per` is reconcile.messages' table; `receipts` every
    receipt (a proxy's witness rows included); `unobserved`, `released` and `bounced` as
    reconcile.count takes them (servers maildrill cannot see past; messages a backup MX
    forwarded or bounced; those its upstream refused for good)."""
    if run_id:
        mine = f"{run_id}-"
        per = per[per.index.astype(str).str.startswith(mine)] if len(per) else per
        if len(receipts):
            receipts = receipts[receipts["msg_id"].astype(str).str.startswith(mine)]
    addressed = _addressed(attempts, per.index)
    if per.empty:
        return Recipients(
            addressed=addressed, accepted=0, delivered=0, lost=0, duplicated=0, stranded=0,
            unverified=0,
        )  # fmt: skip
    accepted = per[per["accepted"].astype(bool)] if "accepted" in per else per.iloc[:0]
    taken = accepted["recipients"] if "recipients" in accepted else pd.Series(1.0, accepted.index)
    # Unknown (an attempts journal without the column): the message as one recipient.
    n = taken.fillna(1).clip(lower=1).astype("int64")
    final = receipts
    if len(receipts) and "outcome" in receipts:
        final = receipts[receipts["outcome"] != "queued"]
    copies, anonymous = _copies(final, n)
    named_delivered = copies.groupby(level=0).size() if len(copies) else pd.Series(dtype="int64")
    named_twice = (copies > 1).groupby(level=0).sum() if len(copies) else pd.Series(dtype="int64")
    delivered = np.minimum(n, named_delivered.reindex(n.index, fill_value=0))
    duplicated = named_twice.drop(anonymous.index, errors="ignore")
    if len(anonymous):
        # Counted from numbers: copies up to the accepted count delivered, beyond it twice.
        whole = n.reindex(anonymous.index)
        whole = whole.fillna(anonymous["largest"]).astype("int64")
        on_time = anonymous.index.intersection(n.index)
        delivered.loc[on_time] = np.minimum(whole[on_time], anonymous.loc[on_time, "copies"])
        extra = np.minimum(whole, (anonymous["copies"] - whole).clip(lower=0))
        duplicated = pd.concat([duplicated, extra])
    left = n - delivered
    held = _held(receipts, mta_queue, released)
    stranded = pd.Series(0, index=n.index, dtype="int64")
    for msg_id, pending in held.items():
        if msg_id not in left.index or left[msg_id] <= 0:
            continue
        if pending is ALL or msg_id in anonymous.index:
            stranded[msg_id] = left[msg_id]
        else:
            reached = set(copies.loc[msg_id].index) if msg_id in named_delivered.index else set()
            stranded[msg_id] = min(int(left[msg_id]), len(pending - reached))
    rest = left - stranded
    blind = accepted["accepted_by"].isin(list(unobserved)) & ~accepted.index.isin(list(bounced))
    return Recipients(
        addressed=addressed,
        accepted=int(n.sum()),
        delivered=int(delivered.sum()),
        lost=int(rest[~blind].sum()),
        duplicated=int(duplicated.sum()),
        stranded=int(stranded.sum()),
        unverified=int(rest[blind].sum()),
    )


def _addressed(attempts: pd.DataFrame, ids: pd.Index) -> int | None:
    """Recipients named in RCPT TO, per message the most any of its attempts named (a
    retry may name fewer: those refused for good are not asked again); None when the
    attempts journal does not say."""
    if "recipients" not in attempts:
        return None
    rows = attempts[attempts["msg_id"].isin(ids)] if len(ids) < len(attempts) else attempts
    if rows.empty:
        return 0
    return int(rows.groupby("msg_id", sort=False)["recipients"].max().fillna(0).sum())


def _copies(final: pd.DataFrame, n: pd.Series) -> tuple[pd.Series, pd.DataFrame]:
    """Of the delivery receipts: how many copies reached each named recipient (a Series on
    (msg_id, address)), for messages whose every receipt names them; and, for the others
    (`anonymous`), the recipients their copies carried in all (`copies`) and the most one
    copy carried (`largest`)."""
    empty = pd.Series(dtype="int64", index=pd.MultiIndex.from_arrays([[], []]))
    no_anonymous = pd.DataFrame({"copies": pd.Series(dtype="int64"), "largest": []})
    if final.empty:
        return empty, no_anonymous
    cells = final["rcpts"].fillna("") if "rcpts" in final else pd.Series("", index=final.index)
    cells = cells.astype(str).str.strip()
    unnamed = cells == ""
    msg_ids = final["msg_id"].astype(str)
    anonymous_ids = pd.Index(msg_ids[unnamed].unique())
    if len(anonymous_ids):
        rows = final[msg_ids.isin(anonymous_ids)]
        size = pd.Series(
            [len(names(c)) for c in cells[rows.index]], index=rows.index, dtype="float64"
        )
        if "rcpt_count" in rows:
            size = size.where(size > 0, rows["rcpt_count"].astype("float64"))
        whole = n.reindex(rows["msg_id"].astype(str)).to_numpy(dtype="float64")
        # A copy with no count (a proxy's witness): all the message's accepted recipients.
        size = size.where(size >= 1, pd.Series(whole, index=rows.index)).fillna(1)
        sizes = size.groupby(rows["msg_id"].astype(str).to_numpy())
        anonymous = pd.DataFrame({"copies": sizes.sum(), "largest": sizes.max()})
        anonymous = anonymous.astype("int64")
    else:
        anonymous = no_anonymous
    keep = ~msg_ids.isin(anonymous_ids)
    if not keep.any():
        return empty, anonymous
    split = cells[keep].str.split()
    pairs = pd.DataFrame({"msg_id": msg_ids[keep], "rcpt": split}).explode("rcpt")
    # One receipt naming an address twice is one copy to it: the sink took one message.
    pairs = pairs.reset_index().drop_duplicates(["index", "rcpt"])
    return pairs.groupby(["msg_id", "rcpt"], sort=False).size(), anonymous


def _held(
    receipts: pd.DataFrame, mta_queue: pd.DataFrame, released: frozenset[str]
) -> dict[str, set[str] | None]:
    """Messages still in a queue at the end, with the recipients held (ALL when a queue's
    record does not name them): a backup MX's queued copy never forwarded nor bounced,
    and every Postfix queue file left (its recipients still to deliver)."""
    held: dict[str, set[str] | None] = {}

    def hold(msg_ids: Iterable[str], cells: Iterable[object], empty_is_none: bool) -> None:
        for msg_id, cell in zip(msg_ids, cells, strict=True):
            known = held.get(msg_id, set())
            unknown = not isinstance(cell, str) or (cell.strip() == "" and not empty_is_none)
            if unknown or known is ALL:
                held[msg_id] = ALL
            else:
                held[msg_id] = known | set(names(cell))

    if len(receipts) and "outcome" in receipts:
        queued = receipts[receipts["outcome"] == "queued"]
        queued = queued[~queued["msg_id"].isin(list(released))]
        # A sink always took at least one recipient: an empty cell is an older journal.
        hold(queued["msg_id"].astype(str), _cells(queued), empty_is_none=False)
    if len(mta_queue):
        # A queue file with every recipient done lists none; no column: an older journal.
        hold(mta_queue["msg_id"].astype(str), _cells(mta_queue), empty_is_none=True)
    return held


def _cells(frame: pd.DataFrame) -> list[object]:
    return list(frame["rcpts"]) if "rcpts" in frame else [None] * len(frame)
