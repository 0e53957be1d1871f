"""The fast journal reader (pandas' C parser) gives what the careful one (csv module) gives,
and hands every damaged file to the careful one."""

from __future__ import annotations

import pandas as pd
import pytest

from loadtest.analysis import journals
from tests import runs


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    return runs.drill(tmp_path_factory.mktemp("drill") / "run")


def lines(path):
    return path.read_text().splitlines(keepends=True)


def both(path, kind="attempts"):
    return journals._read_clean(path, kind), journals._read_careful(path, kind)


def assert_same(fast, careful):
    pd.testing.assert_frame_equal(
        fast[0].reset_index(drop=True), careful[0].reset_index(drop=True), check_dtype=False
    )
    assert fast[1] == careful[1]


def test_a_clean_journal_is_read_fast_and_the_same(drill):
    fast, careful = both(drill / "attempts.csv")
    assert fast is not None
    assert careful[1].skipped == 0
    assert_same(fast, careful)


def test_a_torn_last_line_is_dropped_and_counted_by_both(drill):
    path = drill / "receipts-secondary.csv"  # ends in a torn line (tests/runs.py)
    fast, careful = both(path, "receipts")
    assert fast is not None
    assert (fast[1].torn, fast[1].skipped) == (True, 1)
    assert_same(fast, careful)


@pytest.mark.parametrize(
    "damage",
    [
        "short",  # a line missing only its last (text) field: looks whole to the parser
        "blank",
        "long",
        "quoted",
    ],
)
def test_damaged_or_quoted_journals_are_read_carefully(drill, tmp_path, damage):
    rows = lines(drill / "attempts.csv")
    if damage == "short":
        rows[5] = rows[5].rstrip("\n").rsplit(",", 1)[0] + "\n"
    elif damage == "blank":
        rows.insert(6, "\n")
    elif damage == "long":
        rows[7] = rows[7].rstrip("\n") + ",extra\n"
    else:
        rows[8] = rows[8].rstrip("\n").rsplit(",", 1)[0] + ',"refused, twice"\n'
    path = tmp_path / "attempts.csv"
    path.write_text("".join(rows))
    fast, careful = both(path)
    assert fast is None
    expected_bad = 0 if damage == "quoted" else 1
    assert careful[1].unreadable == expected_bad
    assert careful[1].lines == (
        [] if damage == "quoted" else [{"short": 6, "blank": 7, "long": 8}[damage]]
    )
    loaded = journals._read([path], "attempts", damaged := {})
    lost = 1 if damage in ("short", "long") else 0  # the damaged attempt itself
    assert len(loaded) == 42 - lost  # 42 attempts written
    assert {name: d.skipped for name, d in damaged.items()} == (
        {"attempts.csv": 1} if expected_bad else {}
    )


def test_escaped_cells_are_read_fast_and_the_same(drill, tmp_path):
    """Cells `maildrill.journal.cell` escaped (`'=x`, `''x`) come back unescaped on both paths;
    an escaped number is not one for the fast path: the careful one reads it."""
    rows = lines(drill / "attempts.csv")
    header = rows[0].rstrip("\n").split(",")
    server = header.index("server")
    for i, value in ((3, "'=SUM(1)"), (4, "''x")):
        cells = rows[i].rstrip("\n").split(",")
        cells[server] = value
        rows[i] = ",".join(cells) + "\n"
    path = tmp_path / "attempts.csv"
    path.write_text("".join(rows))
    fast, careful = both(path)
    assert fast is not None
    assert_same(fast, careful)
    assert list(fast[0]["server"][2:4]) == ["=SUM(1)", "'x"]
    code = header.index("code")
    cells = rows[5].rstrip("\n").split(",")
    cells[code] = "'-1"
    rows[5] = ",".join(cells) + "\n"
    path.write_text("".join(rows))
    fast, careful = both(path)
    assert fast is None
    assert careful[0]["code"][4] == -1
