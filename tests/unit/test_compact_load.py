"""The two big journals read compact, a block of rows at a time (journals.Compact,
msg_keys.KeyBook): the same text, numbers, categories and message keys as reading each
file whole and compacting after, damaged files and several files of a kind included,
and the same summary."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from loadtest.analysis import journals, loaded, msg_keys, summary
from loadtest.analysis.journals import CATEGORIES, UNUSED, Compact
from tests import runs


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    return runs.drill(tmp_path_factory.mktemp("drill") / "run")


def copy(drill, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for path in drill.iterdir():
        (run / path.name).write_bytes(path.read_bytes())
    return run


def damaged(drill, tmp_path):
    """The drill with damage on both paths: an attempt whose `start` is empty (the fast
    reader drops it) on the one server it names, and a receipt of the wrong shape (the
    whole file read carefully)."""
    run = copy(drill, tmp_path)
    rows = (run / "attempts.csv").read_text().splitlines(keepends=True)
    header = rows[0].rstrip("\n").split(",")
    cells = rows[9].rstrip("\n").split(",")
    cells[header.index("start")] = ""
    cells[header.index("server")] = "tertiary"
    rows[9] = ",".join(cells) + "\n"
    (run / "attempts.csv").write_text("".join(rows))
    receipts = (run / "receipts-primary.csv").read_text().splitlines(keepends=True)
    receipts[3] = receipts[3].rstrip("\n") + ",extra\n"
    (run / "receipts-primary.csv").write_text("".join(receipts))
    return run


def plain_and_compact(run, kind, known=None):
    """The journals of `kind` read whole and read compact; both name the same damage."""
    plain_damage: dict[str, journals.Damage] = {}
    compact_damage: dict[str, journals.Damage] = {}
    plain = journals.load_kind(run, kind, plain_damage, UNUSED[kind])
    how = Compact(CATEGORIES[kind], known)
    compact = journals.load_kind(run, kind, compact_damage, UNUSED[kind], how)
    assert compact_damage == plain_damage
    return plain, compact, plain_damage


def assert_same_text(plain, compact):
    assert list(compact.columns) == list(plain.columns)
    as_text = {c: "str" for c in compact if isinstance(compact[c].dtype, pd.CategoricalDtype)}
    pd.testing.assert_frame_equal(
        compact.astype(as_text).reset_index(drop=True),
        plain.reset_index(drop=True),
        check_dtype=False,
    )


def refused(drill, tmp_path):
    """A receipt whose size is not a number: the checks let it by, the parser refuses it
    once it meets it (every file is then read again, each on its own)."""
    run = copy(drill, tmp_path)
    path = run / "receipts-secondary.csv"
    rows = path.read_text().splitlines(keepends=True)
    cells = rows[2].split(",")
    cells[rows[0].split(",").index("size")] = "big"
    rows[2] = ",".join(cells)
    path.write_text("".join(rows))
    return run


def two_versions(drill, tmp_path):
    """receipts-secondary.csv of an older version, without the `ptr` column."""
    run = copy(drill, tmp_path)
    path = run / "receipts-secondary.csv"
    rows = path.read_text().splitlines(keepends=True)
    at = rows[0].rstrip("\n").split(",").index("ptr")
    cut = []
    for row in rows:
        end = "\n" if row.endswith("\n") else ""
        cells = row.rstrip("\n").split(",")
        cut.append(",".join(cells[:at] + cells[at + 1 :]) + end)
    path.write_text("".join(cut))
    return run


def escaped(drill, tmp_path):
    """Cells `maildrill.journal.cell` escaped, in a column read as categories."""
    run = copy(drill, tmp_path)
    path = run / "attempts.csv"
    rows = path.read_text().splitlines(keepends=True)
    at = rows[0].split(",").index("server")
    for i, value in ((3, "'=SUM(1)"), (4, "''x")):
        cells = rows[i].split(",")
        cells[at] = value
        rows[i] = ",".join(cells)
    path.write_text("".join(rows))
    return run


def numbers(drill, tmp_path):
    """Servers named with numbers only, two of them the same number written two ways: the
    parser would read that column as the categories 7 and 7 (journals.NotText)."""
    run = copy(drill, tmp_path)
    path = run / "attempts.csv"
    rows = path.read_text().splitlines(keepends=True)
    at = rows[0].split(",").index("server")
    for i in range(1, len(rows)):
        cells = rows[i].split(",")
        cells[at] = "007" if i % 2 else "7"
        rows[i] = ",".join(cells)
    path.write_text("".join(rows))
    return run


MAKE = {"clean": lambda drill, _: drill, "damaged": damaged, "refused": refused}
MAKE |= {"two_versions": two_versions, "escaped": escaped, "numbers": numbers}


@pytest.mark.parametrize("block_rows", [1, 7, journals.BLOCK_ROWS])
@pytest.mark.parametrize("which", list(MAKE))
def test_compact_journals_hold_what_whole_ones_do(drill, tmp_path, monkeypatch, block_rows, which):
    monkeypatch.setattr(journals, "BLOCK_ROWS", block_rows)
    run = MAKE[which](drill, tmp_path)
    attempts, compact_attempts, _ = plain_and_compact(run, "attempts")
    known = compact_attempts["msg_id"].dtype
    receipts, compact_receipts, lost = plain_and_compact(run, "receipts", known)
    for plain, compact, kind in (
        (attempts, compact_attempts, "attempts"),
        (receipts, compact_receipts, "receipts"),
    ):
        assert_same_text(plain, compact)
        for column in CATEGORIES[kind]:  # as astype("category") makes them: sorted, seen
            if plain[column].isna().any():  # a column one version lacks: text, as before
                assert not isinstance(compact[column].dtype, pd.CategoricalDtype)
                continue
            assert compact[column].dtype == plain[column].astype("category").dtype, column
    if which == "escaped":
        assert list(compact_attempts["server"][2:4]) == ["=SUM(1)", "'x"]
    if which == "numbers":
        assert list(compact_attempts["server"].cat.categories) == ["007", "7"]
    if which == "refused":
        assert lost["receipts-secondary.csv"].unreadable == 1
    if which == "two_versions":
        assert compact_receipts["ptr"].isna().sum() > 0
    if which == "damaged":
        assert lost["receipts-primary.csv"].lines == [4]
        assert "tertiary" not in set(compact_attempts["server"].cat.categories)
        assert len(compact_attempts) == len(attempts) == 41  # 42 written, one dropped
    # The receipts' keys are codes among the attempts' ids: `share` has nothing to hash
    # on the clean drill, and gives the text path's keys either way.
    want = msg_keys.share(attempts, receipts)
    got = msg_keys.share(compact_attempts, compact_receipts)
    if which in ("clean", "two_versions"):
        assert got[1] is compact_receipts
        # no receipt of a message never attempted: the attempts' very dtype, not a copy
        assert compact_receipts["msg_id"].dtype is compact_attempts["msg_id"].dtype
    for w, g in zip(want, got, strict=True):
        assert list(g["msg_id"].cat.categories) == list(w["msg_id"].cat.categories)
        assert g["msg_id"].cat.codes.tolist() == w["msg_id"].cat.codes.tolist()


def test_a_compact_load_summarises_as_a_whole_one(drill, tmp_path):
    """The summary of a damaged run directory, loaded compact, is the one made from the
    journals read whole and compacted after (journals named, lines counted, alike)."""
    run = damaged(drill, tmp_path)
    compact = loaded.RunDir.load(run)
    whole = journals.load(run)
    whole = dataclasses.replace(
        whole,
        attempts=journals.load_kind(run, "attempts", {}, UNUSED["attempts"]),
        receipts=journals.load_kind(run, "receipts", {}, UNUSED["receipts"]),
    )
    reference = dataclasses.replace(compact, journals=loaded.compact(whole))
    got = summary.as_json(summary.summarise(compact))
    assert got == summary.as_json(summary.summarise(reference))
    problems = summary.summarise(compact).journal_problems
    assert set(problems.unreadable_lines) == {"attempts.csv", "receipts-primary.csv"}


def test_a_keybook_codes_ids_block_by_block_as_factorize_does_the_whole():
    known = pd.Index(["a-1", "a-2", "a-3"], dtype="str")
    blocks = [["a-2", "x-9", None], ["x-8", "x-9", "a-1"], [], ["x-7", "x-8"]]
    book = msg_keys.KeyBook(known)
    for block in blocks:
        book.add(pd.Series(block, dtype="str"))
    column = book.column()
    every = [i for block in blocks for i in block]
    assert list(column.categories) == ["a-1", "a-2", "a-3", "x-9", "x-8", "x-7"]
    assert [None if pd.isna(v) else v for v in column] == every
    codes, ids = pd.factorize(pd.Series(["a-1", "a-2", "a-3", *every], dtype="str"))
    assert np.array_equal(column.codes, codes[3:])  # known ids first, then first seen
    assert list(ids) == list(column.categories)
    # Another file's keys over the same known ids join as if read in one go.
    again = msg_keys.KeyBook(known)
    again.add_keys(pd.Series(column))
    again.add_keys(pd.Series(column))
    twice = again.column()
    assert list(twice.categories) == list(column.categories)
    assert twice.codes.tolist() == column.codes.tolist() * 2


@pytest.mark.parametrize(
    "blocks",
    [
        [["x-2", "x-9", None], ["x-8", "x-9", "x-2"], [], ["x-7", "x-8"]],  # ids in two blocks
        [["x-1", "x-1", "x-3"]],  # one block
        [],
    ],
)
def test_a_keybook_knowing_nothing_codes_ids_as_factorize_does(blocks):
    """The attempts' book (no id known) factorizes its blocks once, whole."""
    book = msg_keys.KeyBook()
    for block in blocks:
        book.add(pd.Series(block, dtype="str"))
    column = book.column()
    every = [i for block in blocks for i in block]
    codes, ids = pd.factorize(pd.Series(every, dtype="str"))
    assert np.array_equal(column.codes, codes)
    assert list(column.categories) == list(ids)
    # The receipts' book over these ids, as the load makes it.
    receipts = msg_keys.KeyBook(pd.CategoricalDtype(column.categories))
    receipts.add(pd.Series(["x-9", "r-1"], dtype="str"))
    assert list(receipts.column()) == ["x-9", "r-1"]


def test_bounces_factorizes_categories_as_it_does_their_text():
    """bounces._factorized answers from a column's codes what pd.factorize answers from
    its text: codes and values in order of first appearance, unused categories left out."""
    from loadtest.analysis import bounces

    text = pd.Series(["b", "a", "b", "c", "a"], dtype="str")
    unused = pd.Categorical(text, categories=["z", "c", "b", "a"])
    for column in (text, text.astype("category"), pd.Series(unused)):
        frame = pd.DataFrame({"server": column})
        codes, values = bounces._factorized(frame, "server")
        assert codes.tolist() == [0, 1, 0, 2, 1]
        assert list(values) == ["b", "a", "c"]
    codes, values = bounces._factorized(pd.DataFrame({"x": [1]}), "server")  # no column
    assert codes.tolist() == [0]
    assert list(values) == [""]


@pytest.mark.parametrize(
    "ids", [["a", "b", None, "a", "c", "b"], ["a", "c", "b"], [None, None], ["b", "a"]]
)
@pytest.mark.parametrize("extra", [[], ["z"]])  # a category no row uses
@pytest.mark.parametrize("seen", [True, False])  # categories in order of first use, or sorted
@pytest.mark.parametrize("few", [msg_keys.FEW, 0])  # put in order by a sort, or by a hash
def test_factorize_by_codes_answers_as_pandas_on_the_text(monkeypatch, ids, extra, seen, few):
    monkeypatch.setattr(msg_keys, "FEW", few)
    text = pd.Series(ids, dtype="str")
    order = list(dict.fromkeys(i for i in ids if i is not None))
    order = order if seen else sorted(order)
    keyed = pd.Series(pd.Categorical(text, categories=order + extra))
    codes, values = msg_keys.factorize(keyed)
    want_codes, want_values = pd.factorize(text)
    assert codes.tolist() == want_codes.tolist()
    assert list(values) == list(want_values)
