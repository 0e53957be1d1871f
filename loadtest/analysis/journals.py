"""Read a run directory's journals into DataFrames: what cannot be read is refused or counted.

- A journal the analysis cannot use at all raises RunDirError (exit 2) naming the file and
  line: no attempts journal; an empty file; a first line that is not a journal's header
  (not UTF-8, a column twice, a column the analysis needs missing). Read anyway, every
  message in it would count as lost or never sent: the run cannot be analysed honestly.
- A line that cannot be read (wrong number of fields, not UTF-8, a quote left open, a
  needed number that is not one) is left out and counted per file with its line number
  (`Damage`). summary.json's `journal_problems` and `maildrill report` name each such file,
  and no SLO counted from that kind of journal can pass (`slo.check`): the line may be the
  very receipt whose absence reads as "lost", or the attempt whose loss would fail the run.
- A last line without its newline was cut mid-write (its writer was killed). It is left
  out and counted too, but trusted: a sink journals a message before it replies 250, so a
  torn receipt was never acknowledged, and a torn attempt never finished being recorded.

Cells are read back as `maildrill.journal.cell` wrote them: one leading `'` taken off.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_string_dtype, union_categoricals

from loadtest.analysis import journal_scan, msg_keys
from loadtest.analysis.rundir import (
    EXTERNAL,
    HARNESS,
    JOURNAL_PATTERNS,
    RUN,
    RunDirError,
    count_lines,
    read_json,
)
from maildrill.journal import ESCAPE, uncell
from maildrill.records import RECORDS

# Per kind of journal, from its record's fields (maildrill.records): the columns read as
# numbers (the rest as text) and the columns a journal of that kind must have.
NUMERIC = {
    kind: tuple(c.name for c in record.columns() if c.numeric) for kind, record in RECORDS.items()
}
REQUIRED = {
    kind: tuple(c.name for c in record.columns() if c.required) for kind, record in RECORDS.items()
}
# A required number that is not one makes its line unreadable; other numbers become NaN.
NEEDED_NUMBERS = {kind: tuple(c for c in REQUIRED[kind] if c in NUMERIC[kind]) for kind in REQUIRED}
# The files of each kind in a run directory.
PATTERNS = JOURNAL_PATTERNS
NAMED_LINES = 10  # line numbers kept per damaged file (all are counted)
# Columns of the two big journals that no part of the analysis reads: a run directory's
# load leaves them out (a million attempts and receipts hold 8 MB per column; issue 18).
# A column named here must be neither required nor read anywhere under loadtest/analysis
# (tests/unit/test_journal_scan.py checks the second by reading the sources).
UNUSED = {
    "attempts": ("due", "connected", "maybe_duplicate", "retry", "failover", "dns_ttl", "dns_at"),
    "receipts": ("mail_from", "queue_id", "dkim_domain", "dmarc_policy", "auth_detail"),
}

# Text columns of few values, held as categories (a byte a row, not an 8-byte pointer to a
# text object) from the first block of rows read: the whole column as text objects, then
# copied into categories, was the load's peak (issue 18). loaded.compact makes the same
# columns categories in journals the careful reader read.
CATEGORIES = {
    "attempts": (
        "outcome", "server", "worker", "run_id", "stream", "phase", "enhanced", "rcpt_replies",
        # Mostly empty; the analysis turns them into text before it reads them (by_address,
        # dns_follow) or reads them not at all (error).
        "error", "addr", "dns_name",
    ),
    # sink, outcome, helo and session too: 8 bytes a row each as text objects, and the
    # parser makes them categories for less time than it makes text (issue 18).
    "receipts": (
        "worker", "peer", "message_id", "spf", "dkim", "dmarc", "ptr",
        "sink", "outcome", "helo", "session",
    ),
}  # fmt: skip
# Of those, the columns the C parser makes categories itself (journals._fast). It reads a
# column of numbers-only text as number categories ("007" and "7" both 7): the columns
# whose values are often numbers (a worker "0", replies "250") are read as text, and a
# file where another comes out as numbers is read again that way (NotText).
NUMBER_LIKE = ("worker", "rcpt_replies")
PARSER_CATEGORIES = {
    kind: tuple(c for c in columns if c not in NUMBER_LIKE) for kind, columns in CATEGORIES.items()
}
BLOCK_ROWS = 1 << 18  # rows parsed at a time when a journal is read compact


class NotText(Exception):
    """A column the parser made categories came out as numbers, not the file's text."""


@dataclass(frozen=True)
class Compact:
    """How `load` holds the two big journals: CATEGORIES as categories, and `msg_id` as
    codes from `keys` (the receipts' ids looked up among the attempts')."""

    categories: tuple[str, ...]
    keys: pd.CategoricalDtype | None = None  # the attempts' ids (None: none known yet)


@dataclass
class Damage:
    """The lines of one journal file left out of the analysis."""

    kind: str
    unreadable: int = 0  # complete lines that could not be read
    lines: list[int] = field(default_factory=list)  # the first NAMED_LINES of them (1-based)
    torn: bool = False  # the last line has no newline: cut mid-write
    missing: int = 0  # lines the file had when the run ended (harness.json) and has no more

    def add(self, first: int, last: int | None = None) -> None:
        """Lines `first` to `last` (one record, perhaps several lines) could not be read."""
        for line in range(first, (last or first) + 1):
            self.unreadable += 1
            if len(self.lines) < NAMED_LINES:
                self.lines.append(line)

    @property
    def skipped(self) -> int:
        return self.unreadable + int(self.torn) + self.missing


@dataclass
class Journals:
    run_dir: Path
    attempts: pd.DataFrame
    receipts: pd.DataFrame
    refusals: pd.DataFrame
    faults: pd.DataFrame
    run: dict[str, Any]
    damage: dict[str, Damage] = field(default_factory=dict)  # by file name
    relay: pd.DataFrame = field(default_factory=pd.DataFrame)  # backup-MX queues
    mta_queue: pd.DataFrame = field(default_factory=pd.DataFrame)  # left in MTAs at the end
    proxy: pd.DataFrame = field(default_factory=pd.DataFrame)  # fault proxies' connections
    # Rows of attempts.csv that are no SMTP attempt: a message not sent, every recipient
    # suppressed (loadtest.analysis.bounces.split_suppressed, in loaded.compact).
    suppressed: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def skipped(self) -> dict[str, int]:
        """Lines left out, per file (torn last lines included)."""
        return {name: d.skipped for name, d in self.damage.items()}

    @property
    def t0(self) -> float:
        """run.json's t0; without one the first intended send time; without attempts
        (another sender) the first row any sink or proxy journaled."""
        t0 = self.run.get("t0")
        if t0:
            return float(t0)
        if len(self.attempts):
            return float(self.attempts["intended"].min())
        return self.first_sink_row()

    def first_sink_row(self, *others: float) -> float:
        """The time of the first row any sink or proxy journaled (or of `others`, the
        firsts of rows held elsewhere: NaN for none); 0.0 without any."""
        firsts = [float(f["time"].min()) for f in self.sink_side() if len(f)]
        firsts += [t for t in others if t == t]
        return min(firsts) if firsts else 0.0

    def sink_side(self) -> tuple[pd.DataFrame, ...]:
        """The journals the servers' side keeps (sinks, backup MXs, proxies), each timed."""
        return (self.receipts, self.refusals, self.faults, self.relay, self.proxy)


def _contents(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise RunDirError(path, "a directory, not a journal") from None
    except OSError as exc:
        raise RunDirError(path, f"cannot read: {exc.strerror}") from None


def _header(path: Path, kind: str, data: bytes) -> list[str]:
    """The journal's columns; RunDirError when the first line is not a `kind` journal's."""
    if not data:
        raise RunDirError(path, "empty: not even a header line")
    end = data.find(b"\n")
    first = data if end < 0 else data[:end]
    try:
        text = first.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise RunDirError(path, "not a journal: the header is not UTF-8 text", 1) from None
    try:
        header = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise RunDirError(path, f"not a journal: the header is not CSV ({exc})", 1) from None
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise RunDirError(path, f"column {column!r} twice in the header", 1)
        seen.add(column)
    missing = [c for c in REQUIRED[kind] if c not in seen]
    if missing:
        raise RunDirError(path, f"not a {kind} journal: the header has no {', '.join(missing)}", 1)
    return header


def _numbers(frame: pd.DataFrame, kind: str) -> None:
    for column in NUMERIC[kind]:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")


def _read_careful(path: Path, kind: str, data: bytes | None = None) -> tuple[pd.DataFrame, Damage]:
    """Record by record with the csv module: every record of the wrong shape, with bytes
    that are not UTF-8 or a quote that does not close, is left out and its lines counted."""
    data = _contents(path) if data is None else data
    header = _header(path, kind, data)
    damage = Damage(kind)
    end = data.rfind(b"\n") + 1
    damage.torn = end < len(data) and end > 0  # a last line without its newline
    # Bytes that are not UTF-8 become lone surrogates, so the record they are in is found.
    text = data[:end].decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    good: list[list[str]] = []
    at: list[int] = []  # each good row's line
    first = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:  # e.g. a field past the size limit: a quote that never closed
            row = None
        last = reader.line_num
        if first == 1:
            pass  # the header, checked above
        elif row is None or len(row) != len(header) or _undecodable(row):
            damage.add(first, last)
        else:
            good.append([uncell(c) for c in row])
            at.append(first)
        first = last + 1
    frame = pd.DataFrame(good, columns=header)
    _numbers(frame, kind)
    frame = _drop_unreadable(frame, kind, damage, at)
    return frame.reset_index(drop=True), damage


def _undecodable(row: list[str]) -> bool:
    return any(not cell.isascii() and _has_surrogate(cell) for cell in row)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _drop_unreadable(
    frame: pd.DataFrame, kind: str, damage: Damage, lines: list[int] | None = None
) -> pd.DataFrame:
    """Rows whose needed numbers are not numbers are unreadable lines: counted and dropped.
    `lines`: each row's line (None: the row labelled i is line i + 2, a file without
    quotes read from its first row; a block of it keeps its rows' labels)."""
    needed = [c for c in NEEDED_NUMBERS[kind] if c in frame]
    if not needed or not len(frame):
        return frame
    invalid = frame[needed].isna().any(axis=1).to_numpy()
    if not invalid.any():  # keep the frame as it is: no copy of a clean journal
        return frame
    for i in invalid.nonzero()[0]:
        damage.add(lines[i] if lines is not None else int(frame.index[i]) + 2)
    frame = frame[~invalid]
    # Categories hold only the values of rows kept, as `astype("category")` after the
    # drop would (message keys keep theirs: msg_keys.share drops unused ones).
    return frame.assign(
        **{
            c: frame[c].cat.remove_unused_categories()
            for c in frame
            if isinstance(frame[c].dtype, pd.CategoricalDtype) and c != msg_keys.COLUMN
        }
    )


@dataclass
class _Clean:
    """A journal file the fast reader may read, and how (`_fast`)."""

    path: Path
    columns: list[str]  # the frame's, in the file's order
    text: list[str]  # its text columns
    rows: int  # complete lines after the header: the rows to read, no more
    escaped: bool  # a cell `maildrill.journal.cell` escaped
    damage: Damage  # what it left out so far (a torn last line; lines dropped)
    options: dict[str, Any] = field(default_factory=dict)  # pd.read_csv's


def _fast(
    path: Path,
    kind: str,
    data: bytes | None,
    skip: tuple[str, ...],
    categories: tuple[str, ...] = (),
) -> _Clean | None:
    """Whether pandas' C parser may read `path` (see `_read_clean`); None: read carefully.
    The text columns in `categories` are parsed as categories: the parser hashes their
    bytes, where text objects made and then hashed into categories cost about twice the
    time (issue 18)."""
    header = _header(path, kind, _head(path) if data is None else data)
    del data
    try:
        seen = journal_scan.scan(path)
    except OSError as exc:
        raise RunDirError(path, f"cannot read: {exc.strerror}") from None
    if seen.quote_or_nul or not seen.utf8:
        return None
    lines = seen.newlines  # complete lines, the header's included
    if seen.commas != (len(header) - 1) * lines:
        return None
    numeric = [c for c in header if c in NUMERIC[kind] and c not in skip]
    text = [c for c in header if c not in NUMERIC[kind] and c not in skip]
    options: dict[str, Any] = {
        "usecols": lambda c: c not in skip,
        "dtype": {
            **{c: "float64" for c in numeric},
            **{c: "category" if c in categories else str for c in text},
        },
        "keep_default_na": False,
        "na_values": {c: [""] for c in numeric},
        "skip_blank_lines": False,
        # The complete lines checked above, no more: a torn last line was cut
        # mid-write and is not trusted; lines appended since were not checked.
        "nrows": lines - 1,
    }
    return _Clean(
        path=path,
        columns=[c for c in header if c not in skip],
        text=text,
        rows=lines - 1,
        escaped=seen.escaped_cell,
        damage=Damage(kind, torn=seen.last_newline != seen.size - 1),
        options=options,
    )


def _read_clean(
    path: Path, kind: str, data: bytes | None = None, skip: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, Damage] | None:
    """pandas' C parser, for a journal with no damage but perhaps a torn last line: the same
    frame as `_read_careful`, many times faster. None (read carefully instead) when the
    file has quoted fields, or a line of the wrong shape, or a number that is not one, or
    bytes that are not UTF-8. The columns in `skip` are left out of the frame.

    Without quotes, every complete line has the header's shape exactly when the file holds
    (fields - 1) commas per line and no line is too long (the parser refuses those). The
    file is checked a few megabytes at a time (`journal_scan`): never whole in memory
    beside the frame (`data`, when given, is only its header's source).
    """
    clean = _fast(path, kind, data, skip)
    if clean is None:
        return None
    try:
        frame = _unescaped(pd.read_csv(path, **clean.options), clean.text, clean.escaped)
    except (ValueError, pd.errors.ParserError):  # a line too long, a field not a number
        return None
    return _drop_unreadable(frame, kind, clean.damage), clean.damage


def _blocks(clean: _Clean, kind: str) -> Iterator[pd.DataFrame]:
    """A clean file's rows, BLOCK_ROWS at a time, as `_read_clean` reads them (ValueError
    or ParserError: a line the parser refused, as there)."""
    if clean.rows <= 0:
        yield _unescaped(pd.read_csv(clean.path, **clean.options), clean.text, clean.escaped)
        return
    with pd.read_csv(clean.path, chunksize=BLOCK_ROWS, **clean.options) as blocks:
        for block in blocks:
            block = _unescaped(block, clean.text, clean.escaped)
            yield _drop_unreadable(block, kind, clean.damage)


def _unescaped(frame: pd.DataFrame, text: list[str], escaped: bool) -> pd.DataFrame:
    """Cells `maildrill.journal.cell` escaped (a number escaped failed) read back (a
    column parsed as categories is read back as text, then made categories again)."""
    if escaped:
        for column in text:
            values = frame[column]
            if isinstance(values.dtype, pd.CategoricalDtype):
                if values.cat.categories.str.startswith(ESCAPE).any():
                    plain = _unescaped(frame[[column]].astype(str), [column], escaped)[column]
                    frame[column] = plain.astype("category")
                continue
            marked = values.str.startswith(ESCAPE)
            if marked.any():
                frame[column] = values.where(~marked, values.str[1:])
    return frame


def compacted(blocks: Iterable[pd.DataFrame], compact: Compact, rows: int) -> pd.DataFrame:
    """One frame of consecutive blocks of a journal's rows (`rows` of them at most), each
    block kept compact as it comes and let go: its numbers copied into one array made for
    all the rows (the frame's own: no second copy of them is ever made), its CATEGORIES
    columns as categories (put together over the blocks, sorted as `astype("category")`
    sorts them), its `msg_id` as keys (`msg_keys.KeyBook`), its other text as it is."""
    book = msg_keys.KeyBook(compact.keys)
    columns: list[str] = []
    numbers: list[str] = []
    table = np.empty((0, 0))
    parts: dict[str, list[pd.Series]] = {}
    done = 0
    for block in blocks:
        if not columns:
            columns = list(block.columns)
            numbers = [c for c in columns if block[c].dtype == "float64"]
            table = np.empty((len(numbers), rows))
        if numbers:
            table[:, done : done + len(block)] = block[numbers].to_numpy().T
        done += len(block)
        for column in columns:
            if column == msg_keys.COLUMN:
                book.add(block[column])
            elif column not in numbers:
                values = block[column]
                if isinstance(values.dtype, pd.CategoricalDtype):
                    values = text_categories(values, column)
                if column in compact.categories:
                    values = values.astype("category")
                parts.setdefault(column, []).append(values)
        del block
    frame = pd.DataFrame(table[:, :done].T, columns=numbers, copy=False)
    for at, column in enumerate(columns):
        if column in numbers:
            continue
        if column == msg_keys.COLUMN:
            values = pd.Series(book.column())
        elif column in compact.categories:
            values = pd.Series(union_categoricals(parts.pop(column), sort_categories=True))
        else:
            values = pd.concat(parts.pop(column), ignore_index=True)
        frame.insert(at, column, values)
    return frame


def text_categories(values: pd.Series, column: str) -> pd.Series:
    """A column the parser made categories, with text categories as `astype("category")`
    makes them (a block of no rows has categories of no type); NotText if they are
    numbers the parser read the text as."""
    categories = values.cat.categories
    if categories.dtype == "str":
        return values
    if len(categories) and not is_string_dtype(categories):
        raise NotText(column)
    return values.cat.rename_categories(categories.astype("str"))


def _head(path: Path) -> bytes:
    """A file's first line with its newline (the whole file when it has none)."""
    try:
        with path.open("rb") as f:
            head = b""
            while (chunk := f.read(1 << 16)) and b"\n" not in chunk:
                head += chunk
            return head + chunk
    except IsADirectoryError:
        raise RunDirError(path, "a directory, not a journal") from None
    except OSError as exc:
        raise RunDirError(path, f"cannot read: {exc.strerror}") from None


def read_journal(path: Path, kind: str, skip: tuple[str, ...] = ()) -> tuple[pd.DataFrame, Damage]:
    """One journal file: its readable rows (without the columns in `skip`), and what was
    left out."""
    clean = _read_clean(path, kind, skip=skip)
    if clean is not None:
        return clean
    frame, damage = _read_careful(path, kind)
    return frame.drop(columns=[c for c in skip if c in frame]), damage


def _read(
    paths: list[Path],
    kind: str,
    damage: dict[str, Damage],
    skip: tuple[str, ...] = (),
    compact: Compact | None = None,
) -> pd.DataFrame:
    """Concatenate CSV journals of one kind; what each file lost goes into `damage`.
    With `compact`, held compact (`_read_compact`)."""
    if compact is not None and paths:
        return _read_compact(sorted(paths), kind, damage, skip, compact)
    frames = []
    for path in sorted(paths):
        frame, lost = read_journal(path, kind, skip)
        if lost.skipped:
            damage[path.name] = lost
        frames.append(frame)
    if not frames:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c in NUMERIC[kind] else "object")
                for c in REQUIRED[kind]
            }
        )
    if len(frames) == 1 and isinstance(frames[0].index, pd.RangeIndex):
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def _read_compact(
    paths: list[Path], kind: str, damage: dict[str, Damage], skip: tuple[str, ...], compact: Compact
) -> pd.DataFrame:
    """The journals of one kind as one compact frame, made a block at a time from every
    file in turn (`compacted`): neither a whole file's frame nor a frame per file is
    ever held beside it. A damaged file is read carefully, whole, as one block. Files
    with other columns (journals of two versions) are each compacted, then put together
    (`_stacked`); so are all of them when the parser refuses a line the checks let by."""
    try:
        return _read_compact_once(paths, kind, damage, skip, compact, PARSER_CATEGORIES[kind])
    except NotText:
        return _read_compact_once(paths, kind, damage, skip, compact, ())


Source = _Clean | tuple[pd.DataFrame, Damage]  # a file to read in blocks, or one read whole


def sources(
    paths: list[Path], kind: str, skip: tuple[str, ...], compact: Compact, parsed: tuple[str, ...]
) -> list[Source]:
    """How each file is read: in blocks by the C parser (the columns `parsed` made
    categories by it), or carefully, whole, when it is damaged."""
    out: list[Source] = []
    for path in paths:
        clean = _fast(path, kind, None, skip, tuple(c for c in parsed if c in compact.categories))
        if clean is None:
            frame, lost = _read_careful(path, kind)
            out.append((frame.drop(columns=[c for c in skip if c in frame]), lost))
        else:
            out.append(clean)
    return out


def uniform_blocks(sources: list[Source], kind: str) -> tuple[int, Iterator[pd.DataFrame]] | None:
    """The rows of every file, a block at a time, and how many there are at most, when
    every file has the same columns (None: journals of two versions). Iterating raises
    ValueError or ParserError when the parser refuses a line the checks let by."""
    columns = [s.columns if isinstance(s, _Clean) else list(s[0].columns) for s in sources]
    if not all(c == columns[0] for c in columns):
        return None
    rows = sum(s.rows if isinstance(s, _Clean) else len(s[0]) for s in sources)

    def blocks() -> Iterator[pd.DataFrame]:
        for source in sources:
            if isinstance(source, _Clean):
                yield from _blocks(source, kind)
            else:
                yield source[0]

    return rows, blocks()


def record_damage(paths: list[Path], sources: list[Source], damage: dict[str, Damage]) -> None:
    """What each file left out, into `damage` (by file name)."""
    for path, source in zip(paths, sources, strict=True):
        lost = source.damage if isinstance(source, _Clean) else source[1]
        if lost.skipped:
            damage[path.name] = lost


def _read_compact_once(
    paths: list[Path],
    kind: str,
    damage: dict[str, Damage],
    skip: tuple[str, ...],
    compact: Compact,
    parsed: tuple[str, ...],
) -> pd.DataFrame:
    """`_read_compact`, the columns `parsed` made categories by the parser."""
    read = sources(paths, kind, skip, compact, parsed)
    if (uniform := uniform_blocks(read, kind)) is not None:
        rows, blocks = uniform
        try:
            frame = compacted(blocks, compact, rows)
        except (ValueError, pd.errors.ParserError):  # a line too long, a field not a number
            pass
        else:
            record_damage(paths, read, damage)
            return frame
    frames = []
    for path, source in zip(paths, read, strict=True):
        if isinstance(source, _Clean):
            frame, lost = read_journal(path, kind, skip)
        else:
            frame, lost = source
        if lost.skipped:
            damage[path.name] = lost
        frames.append(compacted([frame], compact, len(frame)))
    return frames[0] if len(frames) == 1 else _stacked(frames, compact)


def _stacked(frames: list[pd.DataFrame], compact: Compact) -> pd.DataFrame:
    """Compact frames of several files as one, as `pd.concat` would put them together:
    categories in every file stay categories (put together), message keys are keys over
    the same known ids; a column some file lacks is text (missing there)."""
    book = msg_keys.KeyBook(compact.keys)
    for frame in frames:
        book.add_keys(frame[msg_keys.COLUMN])
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    categories = [
        c
        for c in names
        if c != msg_keys.COLUMN
        and all(c in f and isinstance(f[c].dtype, pd.CategoricalDtype) for f in frames)
    ]
    rest = [f.drop(columns=[c for c in (msg_keys.COLUMN, *categories) if c in f]) for f in frames]
    rest = [
        f.astype({c: "str" for c in f if isinstance(f[c].dtype, pd.CategoricalDtype)}) for f in rest
    ]
    frame = pd.concat(rest, ignore_index=True)
    for at, name in enumerate(names):
        if name == msg_keys.COLUMN:
            frame.insert(at, name, book.column())
        elif name in categories:
            values = union_categoricals([f[name] for f in frames], sort_categories=True)
            frame.insert(at, name, values)
    return frame


def load_kind(
    directory: Path,
    kind: str,
    damage: dict[str, Damage] | None = None,
    skip: tuple[str, ...] = (),
    compact: Compact | None = None,
) -> pd.DataFrame:
    """Every journal of one kind in a directory (e.g. a `maildrill sinks` journal directory),
    without the columns in `skip`; held compact with `compact`."""
    paths = list(directory.glob(PATTERNS[kind]))
    return _read(paths, kind, {} if damage is None else damage, skip, compact)


def _kind_of(name: str) -> str | None:
    return next((k for k, p in PATTERNS.items() if Path(name).match(p)), None)


def _cut_since_the_run(
    run_dir: Path, harness: dict[str, Any] | None, damage: dict[str, Damage]
) -> None:
    """Journals shorter than harness.json recorded when every writer had stopped: their
    lost lines are counted as missing (a cut at a line boundary leaves no torn line); a
    journal gone altogether is a run directory the analysis cannot use."""
    for name, recorded in ((harness or {}).get("journals") or {}).items():
        kind = _kind_of(name)
        path = run_dir / name
        if kind is None or path.parent != run_dir:
            continue
        if not path.exists():
            raise RunDirError(
                path, f"missing, yet harness.json lists it ({recorded['lines']} lines)"
            )
        size = path.stat().st_size
        if size >= recorded["bytes"]:
            continue
        lines = count_lines(path)
        if lines < recorded["lines"]:  # fewer lines: cut (a line edited shorter is not)
            damage.setdefault(name, Damage(kind)).missing = recorded["lines"] - lines


def load(run_dir: Path, big: bool = True) -> Journals:
    """A run directory's journals and run.json; RunDirError when they cannot be analysed.
    `big` false: the attempts and receipts are left out (none of their rows, only their
    required columns), for a run whose partitions are read one at a time."""
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "not a run directory")
    run = read_json(run_dir / "run.json", RUN) or {}
    harness = read_json(run_dir / "harness.json", HARNESS)
    # A run stopped before its first attempt has no attempts; one that finished has them,
    # unless its mail came from another sender (`maildrill sinks`: sender "external").
    finished = harness is not None and harness.get("partial") is False
    finished = finished and (harness or {}).get("sender") != EXTERNAL
    if finished and not list(run_dir.glob(PATTERNS["attempts"])):
        raise RunDirError(
            run_dir / "attempts.csv", "missing, yet harness.json says the run finished"
        )
    damage: dict[str, Damage] = {}
    if big:
        # The receipts' message ids as codes among the attempts' (msg_keys.KeyBook).
        attempts = load_kind(
            run_dir, "attempts", damage, UNUSED["attempts"], Compact(CATEGORIES["attempts"])
        )
        ids = attempts[msg_keys.COLUMN]
        known = ids.dtype if isinstance(ids.dtype, pd.CategoricalDtype) else None
        receipts = load_kind(
            run_dir, "receipts", damage, UNUSED["receipts"], Compact(CATEGORIES["receipts"], known)
        )
    else:
        attempts, receipts = _read([], "attempts", damage), _read([], "receipts", damage)
    journals = Journals(
        run_dir=run_dir,
        attempts=attempts,
        receipts=receipts,
        refusals=load_kind(run_dir, "refusals", damage),
        faults=load_kind(run_dir, "faults", damage),
        relay=load_kind(run_dir, "relay", damage),
        mta_queue=load_kind(run_dir, "mta_queue", damage),
        proxy=load_kind(run_dir, "proxy", damage),
        run=run,
        damage=damage,
    )
    _cut_since_the_run(run_dir, harness, damage)
    return journals
