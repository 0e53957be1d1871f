"""The attempts and receipts journals split by message, so the analysis can hold one share
of the messages at a time.

Ten million attempts and ten million receipts held whole need about 3 GB before any part
of the analysis has worked on them (issue 18: the goal is 2 GB for the whole report).
Every figure made per message (what became of it, its recipients, its bounces, its stream)
needs all of one message's rows, and only them; figures made per attempt add up over
any split of the attempts. So the rows are dealt into `parts` partitions by a hash of
their message id, as they are read: every attempt and receipt of a message lands in the
same partition, in journal order. Each partition is written to a scratch directory (in
the run directory: `_scratch`) a block at a time (pickled frames: no text column is
parsed twice), and read back whole, one at a time, as `journals.load` would have made it
(`compacted`: categories, message keys over that partition's ids).

Only the clean, one-version journals are split: a file read carefully (damaged) is split
too, but files of two versions, or a line the parser refuses after the checks let it by,
leave `split` to answer None, and the analysis reads the run whole as before (right,
only not bounded).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import pandas as pd

from loadtest.analysis import journals, msg_keys
from loadtest.analysis.journals import CATEGORIES, PARSER_CATEGORIES, UNUSED, Compact, Damage
from loadtest.analysis.rundir import RUN, read_json
from loadtest.suppression import SUPPRESSED

# Bytes of attempts journals per partition: about 1.25 million attempts (a line is about
# 200 bytes). A partition that size, its receipts and its per-message table take about
# 800 MB at their largest, in any stage (measured on benchmarks/analysis_scale.py's).
PART_BYTES = 250_000_000
KINDS = ("attempts", "receipts")
SCRATCH_PREFIX = ".maildrill-partitions-"  # in the run directory, removed after


def parts_for(size: int) -> int:
    """How many partitions attempts journals of `size` bytes are dealt into (1: whole)."""
    return max(1, math.ceil(size / PART_BYTES))


def part_of(ids: pd.Series, parts: int) -> np.ndarray:
    """Each message id's partition: a hash of its text, the same in every journal and
    every run (pandas' hash_array: SipHash with a fixed key). A missing id is hashed as
    "" wherever it is missing (a journal's block, a small journal's rows: `mine`)."""
    values = np.asarray(ids.to_numpy(dtype=object))
    missing = pd.isna(values)
    if missing.any():
        values = np.where(missing, "", values)
    hashed = pd.util.hash_array(values)
    return np.asarray(hashed % np.uint64(parts), dtype=np.intp)


class Spill:
    """One kind's rows, dealt into partitions, each a file of pickled blocks in journal
    order (an empty block too, so a partition with no row still has the columns)."""

    def __init__(self, directory: Path, kind: str, parts: int) -> None:
        self.kind = kind
        self.paths = [directory / f"{kind}-{p}.pickle" for p in range(parts)]
        self.rows = [0] * parts
        self._files: list[BinaryIO] = [path.open("wb") for path in self.paths]

    def add(self, block: pd.DataFrame) -> None:
        parts = len(self.paths)
        where = part_of(block[msg_keys.COLUMN], parts)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(parts + 1))
        for p in range(parts):
            share = block.take(order[bounds[p] : bounds[p + 1]])
            pickle.dump(_observed(share), self._files[p], protocol=pickle.HIGHEST_PROTOCOL)
            self.rows[p] += len(share)

    def close(self) -> None:
        for f in self._files:
            f.close()

    def blocks(self, part: int) -> Iterator[pd.DataFrame]:
        with self.paths[part].open("rb") as f:
            while True:
                try:
                    yield pickle.load(f)
                except EOFError:
                    return


def _observed(block: pd.DataFrame) -> pd.DataFrame:
    """A share of a block with categories of the values it holds only, as the parser
    makes them for a block of its own (a category no row has would show in a groupby)."""
    return block.assign(
        **{
            c: block[c].cat.remove_unused_categories()
            for c in block
            if isinstance(block[c].dtype, pd.CategoricalDtype)
        }
    )


@dataclass
class Split:
    """A run directory's attempts and receipts, dealt into `parts` partitions on disk."""

    parts: int
    directory: Path
    spills: dict[str, Spill]
    damage: dict[str, Damage]
    # Of the attempts that are SMTP attempts (not rows of messages not sent): the earliest
    # intended send time (NaN: none), what `Journals.t0` finds in attempts read whole;
    # and, of this run's, the latest end (NaN: none) and the streams in order of first use.
    first_intended: float = math.nan
    last_end: float = math.nan
    first_received: float = math.nan  # the receipts' first time (NaN: none)
    streams: tuple[str, ...] = ()

    def frames(self, part: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Partition `part`'s attempts and receipts, compact as `journals.load` makes them:
        categories, message keys (the receipts' among this partition's attempts')."""
        attempts = self._frame("attempts", part, Compact(CATEGORIES["attempts"]))
        ids = attempts[msg_keys.COLUMN]
        known = ids.dtype if isinstance(ids.dtype, pd.CategoricalDtype) else None
        receipts = self._frame("receipts", part, Compact(CATEGORIES["receipts"], known))
        return attempts, receipts

    def _frame(self, kind: str, part: int, compact: Compact) -> pd.DataFrame:
        spill = self.spills.get(kind)
        if spill is None:  # no journal of this kind: its required columns, no row
            return journals.load_kind(self.directory, kind)
        return journals.compacted(spill.blocks(part), compact, spill.rows[part])

    def close(self) -> None:
        for spill in self.spills.values():
            spill.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Split:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Whole(Exception):
    """The journals cannot be split (two versions of a journal, a line the parser
    refused): they are read whole."""


def mine(frame: pd.DataFrame, part: int, parts: int) -> pd.DataFrame:
    """The rows of `frame` (a small journal with message ids) of partition `part`."""
    if parts == 1 or not len(frame):
        return frame
    return frame[part_of(frame[msg_keys.COLUMN].fillna("").astype(str), parts) == part]


def split(run_dir: Path, parts: int | None = None) -> Split | None:
    """The run's attempts and receipts dealt into partitions (`parts`, or as many as
    `parts_for` their size), with what each file left out; None when one partition does
    (a run small enough to read whole) or the journals cannot be split (`_Whole`)."""
    paths = {kind: sorted(run_dir.glob(journals.PATTERNS[kind])) for kind in KINDS}
    if not paths["attempts"]:
        return None
    if parts is None:
        parts = parts_for(sum(_size(p) for p in paths["attempts"]))
    if parts == 1:
        return None
    for parsed in (PARSER_CATEGORIES, None):
        directory = _scratch(run_dir)
        if directory is None:
            return None  # no scratch space to be had: read whole
        done: Split | None = None
        try:
            done = _split(run_dir, paths, parts, parsed, directory)
            return done
        except journals.NotText:
            continue  # a column of numbers-only text: read as text, as journals.load does
        except _Whole:
            return None
        except OSError:
            # The scratch space ran out (a small or memory-backed temp directory): the run
            # is read whole, as a run of one partition is (right, only not bounded).
            return None
        finally:
            if done is None:
                shutil.rmtree(directory, ignore_errors=True)
    return None


def _scratch(run_dir: Path) -> Path | None:
    """A new directory for the partitions: in the run directory, on the disk that holds
    its journals (the system's temp directory is often memory-backed, and partitions as
    big as the journals kept there would take the very memory they save); in the
    system's temp directory when the run directory takes no new entry; None without
    either. Its name holds this process's id and host: one a killed report left behind
    (SIGKILL, a power cut) is removed by the next report of the run on that host
    (`_sweep`)."""
    prefix = f"{SCRATCH_PREFIX}{os.getpid()}-{_host()}-"
    for where in (run_dir, None):
        try:
            made = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
        except OSError:
            continue
        _sweep(made.parent)
        return made
    return None


def _host() -> str:
    """This host's name as a scratch directory's name may hold it."""
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in socket.gethostname())


def _sweep(directory: Path) -> None:
    """Remove the scratch directories in `directory` whose report process is gone: only
    this user's, made on this host (a pid says nothing of another host's processes, as
    on a shared or network disk), by a process this host no longer has."""
    for path in directory.glob(f"{SCRATCH_PREFIX}*"):
        pid, _, rest = path.name.removeprefix(SCRATCH_PREFIX).partition("-")
        if not (pid.isascii() and pid.isdigit()) or not rest.startswith(f"{_host()}-"):
            continue
        try:
            if path.is_symlink() or not path.is_dir() or path.lstat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)  # its process died without removing it
        except (PermissionError, OverflowError):
            continue  # alive (another user's), or no process at all: left alone


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # read (and refused, by name) where it is read


def _split(
    run_dir: Path,
    paths: dict[str, list[Path]],
    parts: int,
    parsed: dict[str, tuple[str, ...]] | None,
    directory: Path,
) -> Split | None:
    damage: dict[str, Damage] = {}
    spills: dict[str, Spill] = {}
    seen = _Seen(str((read_json(run_dir / "run.json", RUN) or {}).get("run_id", "")))
    try:
        for kind in KINDS:
            compact = Compact(CATEGORIES[kind])
            read = journals.sources(
                paths[kind], kind, UNUSED[kind], compact, parsed[kind] if parsed else ()
            )
            if not read:
                continue
            uniform = journals.uniform_blocks(read, kind)
            if uniform is None:
                raise _Whole
            _, blocks = uniform
            spill = spills[kind] = Spill(directory, kind, parts)
            try:
                for block in blocks:
                    block = _as_text(block, compact)
                    if kind == "attempts":
                        seen.add(block)
                    else:
                        seen.received(block)
                    spill.add(block)
            except (ValueError, pd.errors.ParserError):
                raise _Whole from None
            journals.record_damage(paths[kind], read, damage)
    finally:
        for spill in spills.values():
            spill.close()
    return Split(
        parts=parts,
        directory=directory,
        spills=spills,
        damage=damage,
        first_intended=seen.first_intended,
        first_received=seen.first_received,
        last_end=seen.last_end,
        streams=tuple(seen.streams),
    )


class _Seen:
    """What the whole attempts and receipts journals say that no partition can: the
    earliest intended send time of an SMTP attempt, the first receipt; of this run's
    attempts, the latest end and the order in which they first name each stream (a
    summary lists the streams no plan names in that order)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.first_intended = math.nan
        self.last_end = math.nan
        self.first_received = math.nan
        self.streams: dict[str, None] = {}

    def received(self, block: pd.DataFrame) -> None:
        """A block of receipts: their first time (a run whose every attempt is a message
        not sent starts at its first journaled row, as `Journals.t0` says)."""
        if "time" in block and len(block):
            low = float(block["time"].min())
            if low == low and not self.first_received <= low:
                self.first_received = low

    def add(self, block: pd.DataFrame) -> None:
        sent = (block["outcome"] != SUPPRESSED).to_numpy() if "outcome" in block else None
        rows = block if sent is None else block[sent]
        if "intended" in rows and len(rows):
            low = float(rows["intended"].min())
            if low == low and not self.first_intended <= low:
                self.first_intended = low
        if self.run_id and "run_id" in rows:
            rows = rows[(rows["run_id"] == self.run_id).to_numpy()]
        if "end" in rows and len(rows):
            high = float(rows["end"].max())
            if high == high and not self.last_end >= high:
                self.last_end = high
        if "stream" in rows:
            for name in pd.unique(rows["stream"].astype(str).to_numpy()):
                self.streams.setdefault(str(name))


def _as_text(block: pd.DataFrame, compact: Compact) -> pd.DataFrame:
    """A block whose parser-made categories are text (`journals.text_categories`:
    NotText when the parser read numbers)."""
    for column in block:
        values = block[column]
        if column in compact.categories and isinstance(values.dtype, pd.CategoricalDtype):
            block[column] = journals.text_categories(values, column)
    return block
