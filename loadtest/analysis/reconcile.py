"""One row per message: what the client concluded, joined with what the sinks received.

The counts (lost, duplicates, phantom, stranded, ...) are defined in docs/metrics.md.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import numpy as np
import pandas as pd

from loadtest.analysis import msg_keys
from loadtest.analysis.summary_model import Messages


def messages(attempts: pd.DataFrame, receipts: pd.DataFrame) -> pd.DataFrame:
    """Per message: attempts, final outcome, server, times, and receipt counts per sink.

    Message ids are hashed once (attempts and receipts together) into integer codes; every
    per-message figure is then a bincount or a reduction over attempts sorted by (code,
    attempt, start): no string sorts or joins, whatever the number of messages.
    """
    if attempts.empty:
        per = pd.DataFrame(
            columns=["attempts", "final_outcome", "accepted_by", "intended", "first_start",
                     "final_end", "finished", "accepted", "accepted_end", "recipients",
                     "received", "received_rcpts", "rcpts_unknown", "queued"]
        )  # fmt: skip
        if receipts.empty:
            return per
    n_attempts = len(attempts)
    codes, ids = msg_keys.factorize(
        pd.concat([attempts["msg_id"], receipts["msg_id"]], ignore_index=True)
        if len(receipts)
        else attempts["msg_id"]
    )
    n = len(ids)
    per = pd.DataFrame(index=pd.Index(ids, name="msg_id"))
    per["attempts"] = np.bincount(codes[:n_attempts], minlength=n)
    if n_attempts:
        code = codes[:n_attempts]
        number = attempts["attempt"].to_numpy(dtype="float64")
        start = attempts["start"].to_numpy(dtype="float64")
        order = np.lexsort((start, number, code))  # stable: ties keep journal order
        sorted_code = code[order]
        heads = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]])
        tails = np.r_[heads[1:], len(order)] - 1
        present = sorted_code[heads]  # the codes that have attempts
        last = order[tails]  # each message's last attempt (highest attempt, latest start)

        def by_message(values: np.ndarray, dtype: Any = object) -> pd.Series:
            """One value per message with attempts; NaN for messages only received."""
            out = np.full(n, np.nan, dtype=object)
            out[present] = values
            return pd.Series(out, index=per.index, dtype=dtype)

        def text_at(name: str, rows: np.ndarray, at: np.ndarray) -> pd.Series:
            """attempts[name] of `rows` for the messages `at`, NaN for the others, in the
            column's dtype; from the codes when it holds categories (no text object per
            message, no hash of them back into categories)."""
            values = attempts[name]
            if isinstance(values.dtype, pd.CategoricalDtype):
                codes = np.full(n, -1, dtype=values.cat.codes.dtype)
                codes[at] = values.cat.codes.to_numpy()[rows]
                keyed = pd.Categorical.from_codes(codes, dtype=values.dtype)
                return pd.Series(keyed, index=per.index)
            out = np.full(n, np.nan, dtype=object)
            out[at] = np.asarray(values.to_numpy())[rows]
            return pd.Series(out, index=per.index, dtype=values.dtype)

        def reduce(values: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
            out = np.full(n, np.nan)
            out[present] = ufunc.reduceat(values[order], heads)
            return out

        per["final_outcome"] = text_at("outcome", last, present)
        final = (
            attempts["final"].fillna(1).to_numpy(dtype="float64")[last].astype(bool)
            if "final" in attempts
            else np.ones(len(last), dtype=bool)
        )
        per["finished"] = by_message(final, bool if len(present) == n else object)
        per["intended"] = reduce(attempts["intended"].to_numpy(dtype="float64"), np.minimum)
        per["first_start"] = reduce(start, np.minimum)
        final_end = np.full(n, np.nan)
        final_end[present] = attempts["end"].to_numpy(dtype="float64")[last]
        per["final_end"] = final_end
        accepted = (attempts["outcome"] == "accepted").to_numpy(dtype=bool)
        ok = accepted[order]  # accepted attempts, in (attempt, start) order
        ok_rows = order[ok]
        ok_code = code[ok_rows]
        n_ok = np.bincount(ok_code, minlength=n)
        per["accepted"] = n_ok > 0
        first_ok = np.flatnonzero(np.r_[len(ok_code) > 0, ok_code[1:] != ok_code[:-1]])
        per["accepted_by"] = text_at("server", ok_rows[first_ok], ok_code[first_ok])
        accepted_end = np.full(n, np.inf)
        np.minimum.at(accepted_end, ok_code, attempts["end"].to_numpy(dtype="float64")[ok_rows])
        per["accepted_end"] = np.where(n_ok > 0, accepted_end, np.nan)
        # How many recipients the accepting server took on: what the receipts should add up
        # to, however an MTA splits the message (one delivery per destination).
        expected = np.full(n, np.nan)
        if "recipients" in attempts:
            taken = attempts["recipients"].to_numpy(dtype="float64")
            if "recipients_refused" in attempts:
                taken = taken - np.nan_to_num(attempts["recipients_refused"].to_numpy("float64"))
            expected[ok_code[first_ok]] = taken[ok_rows[first_ok]]
        per["recipients"] = expected
    else:
        for name in ("final_outcome", "accepted_by", "intended", "first_start", "final_end",
                     "accepted_end"):  # fmt: skip
            per[name] = np.nan
        per["finished"] = pd.Series(np.nan, index=per.index, dtype=object)  # as by_message
        per["accepted"] = False
        per["recipients"] = np.nan
    if receipts.empty:
        per["received"] = 0
        per["received_rcpts"] = 0
        per["rcpts_unknown"] = False
        per["queued"] = 0
        return per
    # A backup MX's "queued" receipt is a relay hop, not a delivery: the message counts
    # where it finally lands, so forwarding it is not a duplicate.
    receipt_code = codes[n_attempts:]
    hop = (
        (receipts["outcome"] == "queued").to_numpy()
        if "outcome" in receipts
        else np.zeros(len(receipts), dtype=bool)
    )
    per["received"] = np.bincount(receipt_code[~hop], minlength=n)
    rcpts = (
        receipts["rcpt_count"].to_numpy(dtype="float64")
        if "rcpt_count" in receipts
        else np.full(len(receipts), np.nan)
    )
    unknown = np.isnan(rcpts) | (rcpts < 1)  # e.g. a proxy's witness: no recipient count
    per["received_rcpts"] = np.bincount(
        receipt_code[~hop], weights=np.where(unknown, 1.0, rcpts)[~hop], minlength=n
    )
    per["rcpts_unknown"] = np.bincount(receipt_code[~hop & unknown], minlength=n) > 0
    per["queued"] = np.bincount(receipt_code[hop], minlength=n)
    return per


def count(
    per: pd.DataFrame,
    planned: int,
    run_id: str = "",
    stuck: frozenset[str] = frozenset(),
    unobserved: frozenset[str] = frozenset(),
    released: frozenset[str] = frozenset(),
    refused: frozenset[str] = frozenset(),
    suppressed: frozenset[str] = frozenset(),
) -> Messages:
    """summary.json's `messages` (each count defined in summary_model.Messages); with
    `run_id`, receipts of other runs are left out. `stuck`: messages found in an MTA's
    queue at the end (stranded there, not lost); `unobserved`:
    servers whose receipts maildrill cannot see (what they took is unverified, not lost);
    `released`: messages a backup MX queued and then forwarded or bounced (no longer held);
    `refused`: messages refused for good further on (a backup MX's upstream bounce, a sink's
    5xx naming the msg_id): refused_downstream, not lost nor unverified; `suppressed`:
    messages not sent, every recipient suppressed (their ids; those with an SMTP attempt
    too are counted by it)."""
    if run_id and len(per):
        per = of_run(per, run_id)
    if per.empty:
        return Messages(
            planned=planned, attempted=0, accepted=0, failed=0, received_unique=0, lost=0,
            duplicates=0, phantom=0, stranded=0, not_sent=max(0, planned - len(suppressed)),
            in_flight=0, unverified=0, retried=0, suppressed=len(suppressed),
            refused_downstream=0,
        )  # fmt: skip
    attempted = per["attempts"] > 0
    # (a set of a million ids only when there are suppressed messages to take from it)
    never_sent = len(suppressed - set(per.index[attempted])) if suppressed else 0
    accepted = attempted & per["accepted"].astype(bool)
    finished = per["finished"].fillna(True).astype(bool)
    failed = attempted & ~accepted & finished
    in_flight = attempted & ~accepted & ~finished
    received = per["received"]
    queued = per["queued"] if "queued" in per else pd.Series(0, index=per.index)
    held = ((queued > 0) & ~_among(per.index, released)) | _among(per.index, stuck)
    blind = per["accepted_by"].isin(list(unobserved))
    gone = _among(per.index, refused)
    missing = accepted & (received == 0) & ~held & ~gone
    return Messages(
        planned=planned,
        attempted=int(attempted.sum()),
        accepted=int(accepted.sum()),
        failed=int(failed.sum()),
        received_unique=int((received > 0).sum()),
        lost=int((missing & ~blind).sum()),
        duplicates=int(duplicated(per).sum()),
        phantom=int((failed & (received > 0)).sum()),
        stranded=int((accepted & (received == 0) & held).sum()),
        not_sent=max(0, planned - int(attempted.sum()) - never_sent),
        in_flight=int(in_flight.sum()),
        unverified=int((missing & blind).sum()),
        retried=int((accepted & (per["attempts"] > 1)).sum()),
        suppressed=never_sent,
        refused_downstream=int((accepted & (received == 0) & ~held & gone).sum()),
    )


def total(counts: list[Messages], planned: int) -> Messages:
    """Shares' counts of their messages, added (`count` of each share, its messages not
    sent among its own): every field counts messages, but `planned` (the run's) and
    `not_sent` (what of the plan no share attempted nor left unsent)."""
    fields = {name: sum(getattr(c, name) for c in counts) for name in Messages.model_fields}
    fields["planned"] = planned
    fields["not_sent"] = max(0, planned - fields["attempted"] - fields["suppressed"])
    return Messages(**fields)


def of_run(per: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The rows of `per` (indexed by message id) of run `run_id`, whose ids are `RUN-N`:
    receipts of another run in the same journals are left out. A plain loop over the ids
    (pandas' `.str.startswith` takes several times as long on a million), and no copy of
    the table when every row stays). `str.startswith` mapped over the ids, not a generator
    expression: a third less time on a million."""
    mine = _of_run(per.index, run_id)
    return per if mine.all() else per[mine]


_last_of_run: tuple[weakref.ref[pd.Index], str, np.ndarray] | None = None


def _of_run(index: pd.Index, run_id: str) -> np.ndarray:
    """Which ids of `index` are run `run_id`'s. A summary asks it of the same per-message
    table three times (the run's counts, its recipients, a stream's counts): the last
    answer is kept for that very index object, while it lives (a weak reference)."""
    global _last_of_run
    if _last_of_run is not None and _last_of_run[0]() is index and _last_of_run[1] == run_id:
        return _last_of_run[2]
    prefix = f"{run_id}-"
    text = index if index.inferred_type == "string" else index.astype(str)
    ids = text.to_numpy(dtype=object).tolist()
    mine = np.fromiter(
        map(str.startswith, ids, itertools.repeat(prefix)), dtype=bool, count=len(ids)
    )
    _last_of_run = (weakref.ref(index), run_id, mine)
    return mine


def _among(index: pd.Index, ids: frozenset[str]) -> np.ndarray:
    """`index.isin(ids)`, without hashing a million ids when there are none to look for
    (no backup MX, no MTA under test: most runs)."""
    return index.isin(list(ids)) if ids else np.zeros(len(index), dtype=bool)


def duplicated(per: pd.DataFrame) -> pd.Series:
    """Messages some sink got more than once: more recipients delivered than the server
    took on (an MTA delivering one message per destination domain is not duplicating);
    more than one receipt when the recipients are not known (on either side). A total per
    message: a split message with one part twice and another part missing is not seen."""
    received = per["received"]
    if "received_rcpts" not in per or "recipients" not in per:
        return received > 1
    expected = per["recipients"]
    known = expected.notna() & (expected > 0)
    if "rcpts_unknown" in per:
        known &= ~per["rcpts_unknown"].astype(bool)
    by_rcpt = per["received_rcpts"] > expected.where(known, np.inf)
    return (known & by_rcpt) | (~known & (received > 1))
