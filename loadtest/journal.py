"""The attempts journal: one CSV row per SMTP attempt, the contract with the analysis.

Its rows are `maildrill.records.AttemptRecord.row()`: built where the attempt was made (a
Locust worker ships them to the master as they are), written here in batches."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from maildrill.journal import RowWriter
from maildrill.records import AttemptRecord


class AttemptsJournal:
    """Append-only CSV; whole rows only ever reach the file, their cells as the sinks'
    journals write them (`maildrill.journal.cell`: reply texts are the server's words).

    With `flush_s` 0 every write() is in the file when it returns (the master writes the
    workers' batches so). With `flush_s` > 0 rows wait in memory until flush(), which the
    owner calls every `flush_s` seconds and close() calls last: a crash loses at most that
    window, and a gevent process makes one write a window instead of one a row. (A write
    to a busy disk can block for milliseconds, and with it every user of the process.)
    """

    def __init__(self, path: Path, flush_s: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.flush_s = flush_s
        self._file = path.open("a", newline="", encoding="utf-8")
        self._pending = io.StringIO()
        self._writer = RowWriter(self._pending)
        if self._file.tell() == 0:
            self._writer.writerow(AttemptRecord.header())
            self.flush()
        self.rows = 0

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        if self._file.closed:  # as a write to the closed file did: rows are not lost quietly
            raise ValueError(f"{self.path}: attempts journal is closed")
        n = 0
        for row in rows:
            self._writer.writerow(row)
            n += 1
        self.rows += n
        if not self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Pending rows to the file, in one write."""
        if self._file.closed or not self._pending.tell():
            return
        self._file.write(self._pending.getvalue())
        self._file.flush()
        self._pending.seek(0)
        self._pending.truncate()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
