"""Message ids as integer keys, made once at load and shared by the attempts and receipts.

A million text ids hashed again by every groupby, merge and lookup of the analysis was
about 1.6 s of CPU at a million messages (issue 18). `share` turns the `msg_id` of the
attempts and the receipts into one pd.Categorical dtype over the union of their ids, in
order of first appearance (attempts first, then receipts): the same message has the same
code in both frames, and the text stays in the categories, so whatever is shown to users
is still the text id. `factorize` and `positions` then answer with integer work what
`pd.factorize` and `Index.get_indexer` answer by hashing strings, with the same results;
frames that do not carry shared keys (tests, a frame built by hand) take the text path.

`KeyBook` makes those keys while the journals are read, a block of rows at a time: the
attempts' ids, then the receipts' looked up among them. A receipt's id then costs a code,
not a second string beside the attempt's (ten million of them are about 600 MB of text
objects; issue 18), and `share` has nothing left to hash.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMN = "msg_id"
NEW = -2  # in a block's codes: -2 - j is the block's j-th id not among `known`


class KeyBook:
    """Message ids to integer codes, block by block: the ids in `known` keep their places,
    the others follow in order of first appearance. `column` gives every block added so
    far as one Categorical over `known` and the new ids (missing ids: code -1). `known`
    may be the dtype of the ids known (the attempts'): a column with no other id then has
    that very dtype, its categories neither copied nor hashed again."""

    def __init__(self, known: pd.Index | pd.CategoricalDtype | None = None) -> None:
        self.dtype = known if isinstance(known, pd.CategoricalDtype) else None
        if isinstance(known, pd.CategoricalDtype):
            known = known.categories
        self.known = known if known is not None else pd.Index([], dtype="str")
        self._codes: list[np.ndarray] = []
        self._new: list[pd.Index] = []
        # With nothing known (the attempts' book), the blocks' ids kept as they are and
        # factorized once, whole, by `column` (or before another file's keys join them):
        # hashing each block and then every block's new ids again took half a second more
        # at a million (issue 18).
        self._whole: list[pd.Series] = []

    def add(self, values: pd.Series) -> None:
        if not len(self.known):
            self._whole.append(values)  # factorized with the others (`_factorize_whole`)
            return
        # Each id looked up among the known ones directly (one hash a row); only the
        # others are factorized (a receipt of a message never attempted is rare).
        where = np.asarray(self.known.get_indexer(values), dtype=np.int64)
        unknown = where < 0  # missing ids too: factorize gives them -1 again
        uniques = self.known[:0]
        if unknown.any():
            codes, found = pd.factorize(values[unknown])
            codes = np.asarray(codes)
            where[unknown] = np.where(codes >= 0, NEW - codes, -1)
            uniques = pd.Index(found)
        self._codes.append(where.astype(np.int32))
        self._new.append(uniques)

    def add_keys(self, column: pd.Series) -> None:
        """A Categorical another KeyBook over the same `known` made (another file's)."""
        self._factorize_whole()
        k = len(self.known)
        codes = column.cat.codes.to_numpy().astype(np.int32)
        fresh = codes >= k
        codes[fresh] = NEW - (codes[fresh] - k)
        self._codes.append(codes)
        self._new.append(column.cat.categories[k:])

    def _factorize_whole(self) -> None:
        """The blocks kept whole, as codes of new ids (as `add` would have made them)."""
        if not self._whole:
            return
        values = self._whole[0] if len(self._whole) == 1 else pd.concat(self._whole)
        self._whole = []
        codes, uniques = pd.factorize(values)
        codes = np.asarray(codes)
        self._codes.append(np.where(codes >= 0, NEW - codes, -1).astype(np.int32))
        self._new.append(pd.Index(uniques))

    def column(self) -> pd.Categorical:
        self._factorize_whole()
        new: pd.Index = self._new[0].append(self._new[1:]) if self._new else self.known[:0]
        if len(self._new) == 1:  # one factorize's ids: each once already
            new_codes, new_ids = np.arange(len(new)), new
        else:
            new_codes, new_ids = pd.factorize(new)  # an id new in two blocks: once
        base, start = len(self.known), 0
        for codes, block_new in zip(self._codes, self._new, strict=True):
            fresh = codes <= NEW
            codes[fresh] = base + new_codes[start + (NEW - codes[fresh])]
            start += len(block_new)
        del new, new_codes
        self._new = []
        codes = np.concatenate(self._codes) if self._codes else np.empty(0, dtype=np.int32)
        self._codes = []
        if self.dtype is not None and not len(new_ids):
            return pd.Categorical.from_codes(codes, dtype=self.dtype)
        new_ids = pd.Index(new_ids)
        categories = new_ids if not base else self.known.append(new_ids)
        return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def _already_shared(attempts: pd.Series, receipts: pd.Series) -> pd.CategoricalDtype | None:
    """The receipts' dtype when it already is what `share` would make (keys from a
    `KeyBook` over the attempts' ids): the attempts' ids, each used, in order of first
    appearance, then the receipts' others in theirs. None: `share` must hash."""
    if not (
        isinstance(attempts.dtype, pd.CategoricalDtype)
        and isinstance(receipts.dtype, pd.CategoricalDtype)
    ):
        return None
    mine, theirs = attempts.cat.categories, receipts.cat.categories
    k = len(mine)
    if len(theirs) < k or not theirs[:k].equals(mine):
        return None
    if factorize(attempts)[1] is not mine:  # an id unused, or out of order
        return None
    codes = receipts.cat.codes.to_numpy()
    others = pd.unique(codes[codes >= k])
    if len(others) != len(theirs) - k or (others != np.arange(k, len(theirs))).any():
        return None
    return receipts.dtype


def share(attempts: pd.DataFrame, receipts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`attempts` and `receipts` with `msg_id` as categories of one dtype (the union of
    their ids, in order of first appearance); frames without the column are left as
    they are. Missing ids stay missing (code -1)."""
    frames = [f for f in (attempts, receipts) if COLUMN in f and len(f)]
    if not frames:
        return attempts, receipts
    if len(frames) == 2 and (dtype := _already_shared(attempts[COLUMN], receipts[COLUMN])):
        codes = attempts[COLUMN].cat.codes.to_numpy()
        column = pd.Categorical.from_codes(codes, dtype=dtype)
        return attempts.assign(**{COLUMN: pd.Series(column, index=attempts.index)}), receipts
    codes, ids = factorize(pd.concat([f[COLUMN] for f in frames], ignore_index=True))
    dtype = pd.CategoricalDtype(pd.Index(ids))
    out: list[pd.DataFrame] = []
    start = 0
    for frame in (attempts, receipts):
        if COLUMN not in frame or not len(frame):
            out.append(frame)
            continue
        part = codes[start : start + len(frame)]
        start += len(frame)
        column = pd.Categorical.from_codes(part, dtype=dtype)
        out.append(frame.assign(**{COLUMN: pd.Series(column, index=frame.index)}))
    return out[0], out[1]


def factorize(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize(column)`: codes, and the ids in order of first appearance (missing
    ones -1, not among them); through the integer codes when `column` holds categories."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        codes, ids = pd.factorize(column)
        return np.asarray(codes), pd.Index(ids)
    keys = column.cat.codes.to_numpy()
    categories = column.cat.categories
    if _in_order(keys, len(categories)):
        return keys.astype(np.int64), categories  # the codes are the answer: no hashing
    if len(categories) <= FEW:
        return _by_first_use(keys, categories)
    codes, uniques = pd.factorize(keys)  # -1 (missing) is a value here
    codes = np.asarray(codes)
    uniques = np.asarray(uniques)
    missing = np.flatnonzero(uniques == -1)
    if len(missing):
        j = int(missing[0])
        codes = np.where(codes == j, -1, np.where(codes > j, codes - 1, codes))
        uniques = np.delete(uniques, j)
    if len(uniques) == len(categories) and (uniques == np.arange(len(uniques))).all():
        return codes, categories  # every id, in the categories' own order: no copy
    return codes, categories.take(uniques)


FEW = 1 << 16  # categories few enough to be put in order by a sort of the codes


def _by_first_use(keys: np.ndarray, categories: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """`factorize` of few categories (a server, a stream...): the ones used, in order of
    first use, found by a sort of the codes, not a hash table sized for every row."""
    valid = keys >= 0
    seen, first = np.unique(keys[valid], return_index=True)
    order = np.argsort(first, kind="stable")
    code_of = np.full(len(categories), -1, dtype=np.int64)
    code_of[seen[order]] = np.arange(len(order))
    codes = np.where(valid, code_of[np.where(valid, keys, 0)], -1)
    return codes, categories.take(seen[order])


def _in_order(keys: np.ndarray, size: int) -> bool:
    """Whether every one of `size` categories is used and first used in their order (each
    code new to the column is the last one new plus one; -1, missing, aside): then the
    codes are what factorizing them would give, found without a hash table sized for
    every row (pd.factorize's, over 100 MB at 3 M rows; issue 18)."""
    present = keys[keys >= 0] if (keys < 0).any() else keys
    if not len(present):
        return size == 0
    highest = np.maximum.accumulate(present)
    return bool(highest[0] == 0 and highest[-1] == size - 1 and (np.diff(highest) <= 1).all())


def positions(index: pd.Index, column: pd.Series) -> np.ndarray:
    """`index.get_indexer(column)`: where each id of `column` is in `index` (-1: not
    there); the codes themselves when `index` is the categories of `column`."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = column.cat.categories
        if index is categories or (len(index) == len(categories) and index.equals(categories)):
            return np.asarray(column.cat.codes.to_numpy(), dtype=np.intp)
        where = np.asarray(index.get_indexer(categories))
        codes = column.cat.codes.to_numpy()
        return np.where(codes >= 0, where[codes], -1)
    return np.asarray(index.get_indexer(column))
