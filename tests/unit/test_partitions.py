"""The attempts and receipts dealt into partitions by message (partitions.split): every
row lands in its message's partition, in journal order, as journals.load reads it
(text, numbers, categories of the values there, message keys), damage named the same;
journals that cannot be split are read whole (None), and nothing is left on disk."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from loadtest.analysis import journals, partitions
from tests.unit.test_compact_load import MAKE, drill  # noqa: F401 (a fixture)

SPLIT = ("clean", "damaged", "escaped", "numbers")


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {c: "str" for c in frame if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    ).reset_index(drop=True)


@pytest.mark.parametrize("case", SPLIT)
@pytest.mark.parametrize("parts", [2, 5])
def test_every_row_lands_in_its_messages_partition_as_load_reads_it(
    drill,  # noqa: F811
    tmp_path,
    case,
    parts,
):
    run = MAKE[case](drill, tmp_path)
    whole = journals.load(run)
    split = partitions.split(run, parts)
    assert split is not None
    with split:
        assert split.damage == whole.damage
        seen = {"attempts": 0, "receipts": 0}
        for part in range(parts):
            frames = dict(zip(("attempts", "receipts"), split.frames(part), strict=True))
            for kind, frame in frames.items():
                every = getattr(whole, kind)
                mine = partitions.part_of(every["msg_id"].astype(str), parts) == part
                expected = every[mine]
                assert list(frame.columns) == list(expected.columns)
                pd.testing.assert_frame_equal(as_text(frame), as_text(expected))
                seen[kind] += len(frame)
                for column in frame:
                    values = frame[column]
                    if isinstance(values.dtype, pd.CategoricalDtype) and column != "msg_id":
                        # only the values this partition holds, sorted, as load makes them
                        held = sorted(set(values.dropna().astype(str)))
                        assert list(values.cat.categories) == held, column
            # a receipt's key is its message's code among this partition's attempts
            attempts, receipts = frames["attempts"], frames["receipts"]
            known = attempts["msg_id"].cat.categories
            assert receipts["msg_id"].cat.categories[: len(known)].equals(known)
        assert seen == {"attempts": len(whole.attempts), "receipts": len(whole.receipts)}
        assert all(split.spills[k].rows for k in seen)
    assert not split.directory.exists()


@pytest.fixture
def scratches(monkeypatch) -> list[str]:
    """Every scratch directory `split` makes, by path."""
    made: list[str] = []
    real = partitions.tempfile.mkdtemp

    def mkdtemp(**kwargs: str) -> str:
        made.append(real(**kwargs))
        return made[-1]

    monkeypatch.setattr(partitions.tempfile, "mkdtemp", mkdtemp)
    return made


@pytest.mark.parametrize("case", ["refused", "two_versions"])
def test_journals_that_cannot_be_split_are_read_whole_and_leave_nothing(
    drill,  # noqa: F811
    tmp_path,
    scratches,
    case,
):
    made = scratches
    assert partitions.split(MAKE[case](drill, tmp_path), 3) is None
    assert made
    assert not any(partitions.Path(d).exists() for d in made)


def test_a_run_of_one_partition_is_read_whole(drill):  # noqa: F811
    assert partitions.split(drill) is None  # far fewer than PART_BYTES of attempts
    assert partitions.parts_for(partitions.PART_BYTES) == 1
    assert partitions.parts_for(partitions.PART_BYTES + 1) == 2


def test_a_message_has_the_same_partition_whatever_holds_its_id():
    ids = pd.Series(["run-1", "run-2", "run-30", "x"])
    as_categories = ids.astype("category")
    parts = partitions.part_of(ids, 7)
    assert np.array_equal(parts, partitions.part_of(as_categories, 7))
    assert np.array_equal(parts, partitions.part_of(ids.astype(object), 7))
    assert ((parts >= 0) & (parts < 7)).all()


def test_a_missing_id_has_the_same_partition_in_a_journal_and_a_small_journal():
    ids = pd.Series(["run-1", None, "run-2", math.nan], dtype=object)
    missing = partitions.part_of(pd.Series([""]), 5)[0]
    assert list(partitions.part_of(ids, 5)[[1, 3]]) == [missing, missing]
    small = pd.DataFrame({"msg_id": [None, "run-1"], "sink": ["primary", "primary"]})
    share = partitions.mine(small, int(missing), 5)
    assert share["msg_id"].isna().sum() == 1


def test_a_scratch_space_that_runs_out_leaves_the_run_read_whole(
    drill,  # noqa: F811
    monkeypatch,
    scratches,
):
    made = scratches

    def full(self, block):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(partitions.Spill, "add", full)
    assert partitions.split(drill, 3) is None
    assert made
    assert not any(partitions.Path(d).exists() for d in made)


@pytest.mark.parametrize("temp_too", [False, True])
def test_a_run_directory_that_takes_no_new_entry_has_its_scratch_in_temp(
    drill,  # noqa: F811
    monkeypatch,
    temp_too,
):
    """Partitions go beside the journals; where the run directory refuses a new entry
    they go to the system's temp directory, and without that either the run is read
    whole."""
    made: list[str] = []
    real = partitions.tempfile.mkdtemp

    def mkdtemp(prefix: str = "", dir=None) -> str:
        if dir is not None or temp_too:
            raise PermissionError(13, "Permission denied")
        made.append(real(prefix=prefix))
        return made[-1]

    monkeypatch.setattr(partitions.tempfile, "mkdtemp", mkdtemp)
    split = partitions.split(drill, 3)
    if temp_too:
        assert split is None
        return
    assert split is not None
    with split:
        assert str(split.directory) == made[0]
        assert split.directory.name.startswith(partitions.SCRATCH_PREFIX)
        assert sum(split.spills["attempts"].rows) == len(journals.load(drill).attempts)
    assert not split.directory.exists()


def test_a_scratch_left_by_a_killed_report_is_removed_by_the_next(drill):  # noqa: F811
    """Named by the report's process id: a dead process's is removed, a live one's and
    anything else are left alone."""
    dead, host = ended_pid(), partitions._host()
    left = drill / f"{partitions.SCRATCH_PREFIX}{dead}-{host}-abc"
    (left / "inner").mkdir(parents=True)
    alive = drill / f"{partitions.SCRATCH_PREFIX}{os.getppid()}-{host}-def"
    alive.mkdir()
    elsewhere = drill / f"{partitions.SCRATCH_PREFIX}{dead}-another_host-ghi"
    elsewhere.mkdir()  # a pid of another host: nothing to say it is gone
    other = drill / ".maildrill-partitions-notes"
    other.mkdir()
    odd = drill / f"{partitions.SCRATCH_PREFIX}\u00b2-{host}-x"  # isdigit, yet no int
    odd.mkdir()
    split = partitions.split(drill, 3)
    assert split is not None
    with split:
        assert split.directory.parent == drill
    assert not left.exists()
    assert alive.exists()
    assert elsewhere.exists()
    assert other.exists()
    assert odd.exists()
    assert not split.directory.exists()


def ended_pid() -> int:
    """The id of a process that has ended: a forked child, exited and reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
