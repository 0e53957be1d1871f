"""tally.added: two shares' counts make the whole's, by the type of each field; a field
that adds another way names its rule; what has no sum is refused, never guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from loadtest.analysis.histograms import Slots
from loadtest.analysis.tally import ADD, added, earliest, joined, latest, summed, total


@dataclass
class Counted:
    sent: int = 0
    by_server: dict[str, int] = field(default_factory=dict)
    per_fault: tuple[int, ...] = ()
    ends: list[float] = field(default_factory=list)
    delays: np.ndarray = field(default_factory=lambda: np.array([], dtype=float))
    servers: set[str] = field(default_factory=set)
    first: float | None = field(default=None, metadata={ADD: earliest})
    last: float | None = field(default=None, metadata={ADD: latest})
    latency: Slots | None = None


def test_each_field_adds_by_its_type() -> None:
    a = Counted(3, {"primary": 2, "secondary": 1}, (1, 0), [1.0], np.array([0.5]), {"a"}, 5.0, 9.0)
    b = Counted(4, {"primary": 1, "backup": 3}, (2, 5), [2.0], np.array([0.7]), {"b"}, 4.0, 8.0)
    whole = added(a, b)
    assert whole.sent == 7
    assert whole.by_server == {"primary": 3, "secondary": 1, "backup": 3}
    assert whole.per_fault == (3, 5)
    assert whole.ends == [1.0, 2.0]
    assert list(whole.delays) == [0.5, 0.7]
    assert whole.servers == {"a", "b"}
    assert (whole.first, whole.last) == (4.0, 9.0)
    assert a.sent == 3  # the shares are left as they were
    assert a.by_server == {"primary": 2, "secondary": 1}


def test_numpy_scalars_add_as_numbers() -> None:
    assert added(np.int64(2), np.int64(3)) == 5
    assert added(np.float64(0.5), 1.0) == 1.5
    with pytest.raises(TypeError, match="bool"):
        added(np.bool_(True), np.bool_(False))


def test_none_is_nothing_counted() -> None:
    assert added(None, 4) == 4
    assert added(4, None) == 4
    assert total([Counted(latency=None), Counted(latency=Slots.of(np.array([0.1])))]).latency


def test_hdr_slots_add_as_one_histogram_of_both() -> None:
    first, second = np.array([0.010, 0.020, 0.030]), np.array([0.500, 0.900])
    whole = added(Slots.of(first), Slots.of(second))
    assert whole.percentiles_ms() == Slots.of(np.concatenate((first, second))).percentiles_ms()


def test_earliest_and_latest_skip_nothing_seen_in_any_order() -> None:
    instants = [None, math.nan, 7.0, 3.0, math.nan, 9.0]
    for order in (instants, instants[::-1]):
        first = last = None
        for value in order:
            first, last = earliest(first, value), latest(last, value)
        assert (first, last) == (3.0, 9.0)


def test_what_has_no_sum_is_refused() -> None:
    with pytest.raises(TypeError, match="bool"):
        added(True, False)
    with pytest.raises(TypeError, match="str"):
        added("primary", "secondary")


def test_counts_over_the_same_bins_add_bin_by_bin() -> None:
    @dataclass
    class Binned:
        per_second: np.ndarray | None = field(default=None, metadata={ADD: summed})

    whole = total([Binned(np.array([1, 0, 2])), Binned(None), Binned(np.array([0, 3, 1]))])
    assert list(whole.per_second) == [1, 3, 3]


def test_shares_with_categories_typed_apart_are_joined() -> None:
    """A share with no verified receipt (or no deferred attempt) has untyped, empty
    categories; another's are text: joined, the rows are all there, in order."""
    text = pd.DataFrame({"sink": pd.Series(["gmail", "yahoo"]).astype(str).astype("category")})
    empty = pd.DataFrame({"sink": pd.Series(dtype=object).astype("category")})
    missing = pd.DataFrame({"sink": pd.Series([None, None], dtype=object).astype("category")})
    assert empty["sink"].cat.categories.dtype != text["sink"].cat.categories.dtype
    whole = joined([empty, text, missing, text])
    assert isinstance(whole["sink"].dtype, pd.CategoricalDtype)
    assert whole["sink"].tolist()[:2] == ["gmail", "yahoo"]
    assert whole["sink"].isna().tolist() == [False, False, True, True, False, False]
    as_objects = pd.DataFrame({"sink": pd.Series(["gmail"], dtype=object).astype("category")})
    assert joined([text, as_objects])["sink"].tolist() == ["gmail", "yahoo", "gmail"]
