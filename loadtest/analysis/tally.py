"""Adding up what each share of a run's messages counted (`added`), so the analysis can
hold one partition of the messages at a time (loadtest.analysis.partitions) and still
give the whole run's figures.

What a share counted is a dataclass whose fields say, by their type, how two shares'
values make the whole's: numbers add, dicts add key by key, lists and numpy arrays of
instants are put end to end, tuples (one value per fault, per stage...) add place by
place, sets unite, HDR counts by slot add (`histograms.Slots`),
`None` stands for nothing counted. A field that adds another way names it in its
metadata (`field(metadata={ADD: min})`: the earliest of the shares' instants).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from loadtest.analysis.histograms import Slots

ADD = "add"  # a field's metadata key: the function that adds two shares' values
T = TypeVar("T")


def earliest(a: float | None, b: float | None) -> float | None:
    """The earlier of two instants (None or NaN: none seen, as pandas' min skips NaN)."""
    return b if a is None or a != a else a if b is None or b != b else min(a, b)


def latest(a: float | None, b: float | None) -> float | None:
    """The later of two instants (None or NaN: none seen, as pandas' max skips NaN)."""
    return b if a is None or a != a else a if b is None or b != b else max(a, b)


def summed(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Two shares' counts over the same bins, bin by bin (None: nothing counted)."""
    return b if a is None else a if b is None else a + b


def added(a: Any, b: Any) -> Any:
    """Two shares' counts of the same thing, added (see the module's docstring)."""
    if a is None:
        return b
    if b is None:
        return a
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        values = {}
        for f in dataclasses.fields(a):
            add: Callable[[Any, Any], Any] = f.metadata.get(ADD, added)
            values[f.name] = add(getattr(a, f.name), getattr(b, f.name))
        return dataclasses.replace(a, **values)
    if isinstance(a, bool | np.bool_):
        raise TypeError("a bool has no sum: name how it adds (field metadata)")
    if isinstance(a, int | float | np.integer | np.floating | Slots):
        return a + b
    if isinstance(a, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = added(out[key], value) if key in out else value
        return out
    if isinstance(a, tuple):  # one value per fault, per stage...: added in place
        return tuple(added(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, list):
        return a + b
    if isinstance(a, set | frozenset):
        return a | b
    if isinstance(a, np.ndarray):
        return np.concatenate((a, b))
    raise TypeError(f"no way to add {type(a).__name__}")


def total(shares: Iterable[T]) -> T:
    """Every share's counts added (at least one share)."""
    return functools.reduce(added, shares)


def joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Shares' rows (frames of the same columns) end to end, in the shares' order. A
    column of categories in every share stays one, of every share's values
    (`union_categoricals`): `pd.concat` would make text objects of shares whose
    categories differ, 8 bytes a row and more where a code took one or two."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    columns: dict[str, Any] = {}
    for name in frames[0].columns:
        parts = [frame[name] for frame in frames]
        if all(isinstance(part.dtype, pd.CategoricalDtype) for part in parts):
            columns[name] = _unioned(parts)
        else:
            columns[name] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(columns, columns=frames[0].columns)


def _unioned(parts: list[pd.Series]) -> pd.Series:
    """`union_categoricals` of shares whose categories may be typed apart: a share with no
    value (no verified receipt, no deferred attempt) has untyped (object) categories
    where the others have text ones, and the union refuses to mix them. The empty ones
    take the others' type; shares of values typed apart all become objects."""
    kinds = {part.cat.categories.dtype for part in parts if len(part.cat.categories)}
    target = kinds.pop() if len(kinds) == 1 else np.dtype(object)
    same = [
        part
        if part.cat.categories.dtype == target
        else part.cat.set_categories(part.cat.categories.astype(target))
        for part in parts
    ]
    return pd.Series(union_categoricals(same))
