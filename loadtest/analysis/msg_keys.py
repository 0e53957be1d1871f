"""Message ids as integer keys, made once at load and shared by the attempts and receipts.

A million text ids hashed again by every groupby, merge and lookup of the analysis was
about 1.6 s of CPU at a million messages (issue 18). `share` turns the `msg_id` of the
attempts and the receipts into one pd.Categorical dtype over the union of their ids, in
order of first appearance (attempts first, then receipts): the same message has the same
code in both frames, and the text stays in the categories, so whatever is shown to users
is still the text id. `factorize` and `positions` then answer with integer work what
`pd.factorize` and `Index.get_indexer` answer by hashing strings, with the same results;
frames that do not carry shared keys (tests, a frame built by hand) take the text path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMN = "msg_id"


def share(attempts: pd.DataFrame, receipts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`attempts` and `receipts` with `msg_id` as categories of one dtype (the union of
    their ids, in order of first appearance); frames without the column are left as
    they are. Missing ids stay missing (code -1)."""
    frames = [f for f in (attempts, receipts) if COLUMN in f and len(f)]
    if not frames:
        return attempts, receipts
    codes, ids = pd.factorize(pd.concat([f[COLUMN] for f in frames], ignore_index=True))
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
    codes, uniques = pd.factorize(keys)  # -1 (missing) is a value here
    codes = np.asarray(codes)
    uniques = np.asarray(uniques)
    missing = np.flatnonzero(uniques == -1)
    if len(missing):
        j = int(missing[0])
        codes = np.where(codes == j, -1, np.where(codes > j, codes - 1, codes))
        uniques = np.delete(uniques, j)
    categories = column.cat.categories
    if len(uniques) == len(categories) and (uniques == np.arange(len(uniques))).all():
        return codes, categories  # every id, in the categories' own order: no copy
    return codes, categories.take(uniques)


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
