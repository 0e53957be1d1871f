"""Append-only CSV journals, flushed record by record.

A record is written to the OS before the sink sends the reply it describes, so a sink
killed with SIGKILL loses nothing it acknowledged (the page cache survives the process).

Cells hold what clients sent (MAIL FROM, X-Maildrill-Id, Message-ID, EHLO, reply texts).
A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a CR as a formula
(OWASP, "CSV Injection"), so `cell` writes such text with a leading `'` (a spreadsheet shows
it as text) and `uncell` takes it off again. Text that starts with `'` itself gets one more,
so every value reads back exactly: the reader takes off one leading `'`, whatever follows.
Every journal writer (`CsvJournal`, loadtest's attempts journal) and every reader (the
analysis, the progress line) goes through these two; no caller escapes anything itself.
What goes in each journal, column by column, is its record in `maildrill.records`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

from maildrill.records import Record

R = TypeVar("R", bound=Record)

# What makes a spreadsheet read a cell as a formula (OWASP), with the fullwidth forms some
# spreadsheets take for the ASCII ones; and the escape, which must round-trip too.
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
ESCAPE = "'"
_ESCAPED = FORMULA_START | {ESCAPE}
# What RowWriter's fast path looks for in a formatted line: a cell that may start with one
# of those (the first cell is looked at apart), or starts with a quote (a quoted value).
_CELL_STARTS = "".join(sorted(_ESCAPED | {'"'}))
_RISKY_CELL = re.compile(f",[{re.escape(_CELL_STARTS)}]")


def cell(value: Any) -> Any:
    """A value as a journal writes it: text a spreadsheet would run (or text that starts with
    the escape) behind a `'`. Numbers are written as numbers: a spreadsheet reads `-5` as -5."""
    if isinstance(value, str) and value[:1] in _ESCAPED:
        return ESCAPE + value
    return value


def uncell(text: str) -> str:
    """A journal cell's value: the one leading `'` that `cell` added, taken off."""
    return text[1:] if text[:1] == ESCAPE else text


class RowWriter:
    """The one way journal rows are written: cells through `cell`, one row per line.

    The csv module quotes a value only for the delimiter, the quote and the line
    terminator's characters: with "\n" as terminator a bare CR goes out unquoted, and every
    reader takes it for the end of the row. A row with a CR in a value is written quoted
    whole (rare: what a client sent), so it reads back as one row, exactly.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._plain = csv.writer(out, lineterminator="\n")
        self._quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._scratch = io.StringIO()
        self._formatted = csv.writer(self._scratch, lineterminator="\n")

    def writerow(self, row: Sequence[Any]) -> None:
        """Nearly every row has nothing to escape: it is formatted as it is, looked at
        once, and written (half the time of a `cell` call per value, on every message of
        the senders' and the sinks' hot paths). A line in which a cell might start with a
        character `cell` escapes, or holds a CR, is written the careful way instead."""
        scratch = self._scratch
        self._formatted.writerow(row)
        line = scratch.getvalue()
        scratch.seek(0)
        scratch.truncate()
        if line[:1] in _CELL_STARTS or "\r" in line or _RISKY_CELL.search(line) is not None:
            self._careful(row)
        else:
            self._out.write(line)

    def _careful(self, row: Sequence[Any]) -> None:
        values = [cell(value) for value in row]
        if any(isinstance(v, str) and "\r" in v for v in values):
            self._quoted.writerow(values)
        else:
            self._plain.writerow(values)


class CsvJournal:
    """One CSV file of one kind of record (`maildrill.records`), its header first; `write`
    appends one record's row (its cells as `cell` writes them) and flushes it.

    Opening a journal that exists checks its header: appending rows of another layout
    would make every one of them unreadable."""

    def __init__(self, path: Path, record: type[Record]) -> None:
        self.path = path
        self.record = record
        header = record.header()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = RowWriter(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(header)
            self._file.flush()
        else:
            with path.open(encoding="utf-8", errors="replace") as existing:
                first = existing.readline().rstrip("\r\n")
            if first != ",".join(header):
                self._file.close()
                raise ValueError(
                    f"{path}: written by another maildrill version (other columns); "
                    "use a new journal directory"
                )
        self.rows = 0

    def write(self, record: Record) -> None:
        if type(record) is not self.record:
            raise TypeError(f"{self.path}: a {type(record).__name__} in another journal")
        self._writer.writerow(record.row())
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


class JournalTail(Generic[R]):
    """A journal read as it grows (the progress line reads the attempts journal so): each
    `poll` returns the records of the lines completed since the last one. A line still
    being written waits for the next poll; a line that is not a record is skipped."""

    def __init__(self, path: Path, record: type[R]) -> None:
        self.path = path
        self.record = record
        self.header: list[str] | None = None
        self.offset = 0
        self.skipped = 0

    def poll(self) -> list[R]:
        out = []
        for cells in self._lines():
            try:
                out.append(self.record.parse(cells))
            except ValueError:
                self.skipped += 1
        return out

    def poll_columns(self, names: Sequence[str]) -> list[tuple[str, ...]]:
        """The cells of `names` (as `uncell` reads them), of each line completed since the
        last poll: for a reader that needs a few columns of every line as it comes (the
        progress line: four of an attempt's 25), without making records of them. A line
        of the wrong length is skipped as in `poll`; the cells are not checked further,
        and a column the journal lacks reads ""."""
        out = []
        for cells in self._lines(names):
            out.append(tuple(cells[name] for name in names))
        return out

    def _lines(self, names: Sequence[str] | None = None) -> Iterator[dict[str, str]]:
        """Each completed line's cells by column (only `names`, when given)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            return
        self.offset += cut
        text = chunk[:cut].decode("utf-8", "replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        where: list[tuple[str, int]] | None = None
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # a quote that never closes: what follows is one bad record
                self.skipped += 1
                continue
            if self.header is None:
                self.header = [uncell(c) for c in row]
                continue
            if len(row) != len(self.header):
                self.skipped += 1
                continue
            if names is None:
                yield {name: uncell(c) for name, c in zip(self.header, row, strict=True)}
                continue
            if where is None:  # a column the header lacks reads "" (an older journal)
                at = {name: i for i, name in enumerate(self.header)}
                where = [(name, at.get(name, -1)) for name in names]
            yield {name: uncell(row[i]) if i >= 0 else "" for name, i in where}
