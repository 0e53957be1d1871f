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

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loadtest.analysis import msg_keys, reconcile
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
    refused: frozenset[str] = frozenset(),
) -> Recipients:
    """summary.json's `recipients`. `per` is reconcile.messages' table; `receipts` every
    receipt (a proxy's witness rows included); `unobserved`, `released` and `refused` as
    reconcile.count takes them (servers maildrill cannot see past; messages a backup MX
    forwarded or bounced; those refused for good further on: their recipients left over are
    refused_downstream, not lost nor unverified).

    Message ids become positions in `per` once (`get_indexer`); every per-message figure
    is then a bincount over integer codes, and only the few messages held in a queue are
    looked at one by one: a million receipts cost about what reconcile does."""
    if run_id and len(per):
        per = reconcile.of_run(per, run_id)
    ids = per.index
    addressed = _addressed(attempts, ids)
    if per.empty:
        return Recipients(
            addressed=addressed, accepted=0, delivered=0, lost=0, duplicated=0, stranded=0,
            unverified=0, refused_downstream=0,
        )  # fmt: skip
    size = len(ids)
    accepted = per["accepted"].to_numpy(dtype=bool) if "accepted" in per else np.zeros(size, bool)
    taken = per["recipients"].to_numpy(dtype="float64") if "recipients" in per else np.ones(size)
    # Unknown (an attempts journal without the column): the message as one recipient.
    n = np.where(accepted, np.clip(np.nan_to_num(taken, nan=1.0), 1, None), 0).astype("int64")
    final = receipts
    if len(receipts) and "outcome" in receipts:
        final = receipts[receipts["outcome"] != "queued"]
    copies = _Copies.of(final, ids, n)
    delivered = np.where(
        copies.anonymous,
        np.minimum(n, copies.carried),
        np.minimum(n, copies.named),
    )
    # Counted from numbers: copies beyond the accepted count (or, for a message never
    # accepted, beyond the most one copy carried) are recipients delivered twice.
    whole = np.where(accepted, n, copies.largest)
    duplicated = np.where(
        copies.anonymous, np.minimum(whole, np.clip(copies.carried - whole, 0, None)), copies.twice
    )
    left = np.where(accepted, n - delivered, 0)
    stranded = np.zeros(size, dtype="int64")
    held = _held(receipts, mta_queue, released)
    where = ids.get_indexer(list(held)) if held else np.empty(0, dtype="int64")
    reached = copies.reached(held)
    for i, (msg_id, pending) in zip(where, held.items(), strict=True):
        if i < 0 or left[i] <= 0:
            continue
        if pending is ALL or copies.anonymous[i]:
            stranded[i] = left[i]
        else:
            stranded[i] = min(int(left[i]), len(pending - reached.get(msg_id, set())))
    rest = left - stranded
    gone = ids.isin(list(refused)) & accepted
    blind = per["accepted_by"].isin(list(unobserved)).to_numpy(dtype=bool) & ~gone & accepted
    return Recipients(
        addressed=addressed,
        accepted=int(n.sum()),
        delivered=int(delivered.sum()),
        lost=int(rest[~blind & ~gone].sum()),
        duplicated=int(duplicated.sum()),
        stranded=int(stranded.sum()),
        unverified=int(rest[blind].sum()),
        refused_downstream=int(rest[gone].sum()),
    )


def _addressed(attempts: pd.DataFrame, ids: pd.Index) -> int | None:
    """Recipients named in RCPT TO, per message the most any of its attempts named (a
    retry may name fewer: those refused for good are not asked again); None when the
    attempts journal does not say."""
    if "recipients" not in attempts:
        return None
    code = msg_keys.positions(ids, attempts["msg_id"])
    mine = code >= 0
    most = np.zeros(len(ids))
    named = np.nan_to_num(attempts["recipients"].to_numpy(dtype="float64"))
    np.maximum.at(most, code[mine], named[mine])
    return int(most.sum())


@dataclass(frozen=True)
class _Copies:
    """What the delivery receipts say per message (arrays in `per`'s order).

    A message whose every receipt names its recipients: `named` (distinct recipients
    named), `twice` (those named in more than one receipt); `reached(msg_id)` gives the
    addresses. The others are `anonymous`: `carried` (recipients its copies carried in
    all: `rcpt_count` each, all its accepted ones when unknown) and `largest` (the most
    one copy carried)."""

    named: np.ndarray
    twice: np.ndarray
    anonymous: np.ndarray
    carried: np.ndarray
    largest: np.ndarray
    rows: pd.DataFrame  # the named receipts: msg_id, rcpts

    @classmethod
    def of(cls, final: pd.DataFrame, ids: pd.Index, n: np.ndarray) -> _Copies:
        size = len(ids)
        zeros = np.zeros(size, dtype="int64")
        no_rows = pd.DataFrame({"msg_id": [], "rcpts": []})
        if final.empty:
            return cls(zeros, zeros, np.zeros(size, bool), zeros, zeros, no_rows)
        code = msg_keys.positions(ids, final["msg_id"])
        keep = code >= 0  # receipts of other runs' messages are not this run's recipients
        final, code = final[keep], code[keep]
        if "rcpts" in final:
            cells = final["rcpts"].fillna("").astype(str).to_numpy()
        else:
            cells = np.full(len(final), "", dtype=object)
        unnamed = cells == ""
        anonymous = np.bincount(code[unnamed], minlength=size) > 0
        # Anonymous messages: their copies counted from numbers.
        in_anonymous = anonymous[code]
        each = (
            final["rcpt_count"].to_numpy(dtype="float64")
            if "rcpt_count" in final
            else np.full(len(final), np.nan)
        )
        spoken = np.array([len(c.split()) for c in cells[in_anonymous & ~unnamed]], dtype=float)
        each = each.copy()
        each[in_anonymous & ~unnamed] = spoken
        each = np.where(each >= 1, each, n[code])  # a witness row: all accepted ones
        each = np.maximum(each, 1)[in_anonymous]
        carried = np.bincount(code[in_anonymous], weights=each, minlength=size).astype("int64")
        largest = np.zeros(size)
        np.maximum.at(largest, code[in_anonymous], each)
        # Named messages: (message, address) pairs, one per receipt and address. One
        # receipt naming an address twice is one copy to it (the sink took one message).
        named_cells = cells[~in_anonymous]
        # Most receipts name one recipient: only the cells with a space are split. (A list
        # comprehension: twice as fast as `.str.contains` on a million text cells.)
        several = np.array([" " in c for c in named_cells.tolist()], dtype=bool)
        split = [c.split() for c in named_cells[several]]
        per_cell = np.fromiter(map(len, split), "int64", len(split))
        row = np.concatenate(
            [np.flatnonzero(~several), np.repeat(np.flatnonzero(several), per_cell)]
        )
        flat = np.concatenate(
            [
                named_cells[~several],
                np.fromiter(itertools.chain.from_iterable(split), object, int(per_cell.sum())),
            ]
        )
        address_code, _ = pd.factorize(flat)
        width = int(address_code.max(initial=0)) + 1
        if any(len(set(c)) < len(c) for c in split):
            once = np.unique(row * width + address_code)  # (receipt, address), once each
            row, address_code = once // width, once % width
        message = code[~in_anonymous][row]
        pairs, times = np.unique(message * width + address_code, return_counts=True)
        owner = pairs // width
        return cls(
            named=np.bincount(owner, minlength=size),
            twice=np.bincount(owner[times > 1], minlength=size),
            anonymous=anonymous,
            carried=carried,
            largest=largest.astype("int64"),
            rows=final.loc[~in_anonymous, ["msg_id", "rcpts"]] if "rcpts" in final else no_rows,
        )

    def reached(self, msg_ids: Iterable[object]) -> dict[object, set[str]]:
        """The addresses named in these messages' delivery receipts."""
        rows = self.rows[self.rows["msg_id"].isin(list(msg_ids))]
        out: dict[object, set[str]] = {}
        for msg_id, cell in zip(rows["msg_id"], rows["rcpts"], strict=True):
            out.setdefault(msg_id, set()).update(names(cell))
        return out


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
