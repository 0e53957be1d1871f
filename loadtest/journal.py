"""The attempts journal: one CSV row per SMTP attempt, the contract with the analysis."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loadtest.client import Attempt
from maildrill.journal import RowWriter

ATTEMPT_FIELDS = (
    "run_id", "worker", "msg_id", "stream", "attempt", "server", "intended", "due", "start",
    "connected", "end", "phase", "code", "enhanced", "outcome", "bytes", "recipients",
    "recipients_refused", "new_connection", "retry", "failover", "final", "maybe_duplicate",
    "error",
)  # fmt: skip


def attempt_row(
    record: Attempt, run_id: str, worker: str, failover: bool, final: bool
) -> tuple[Any, ...]:
    """A journal row; plain values only, so it can travel to the master as is."""
    return (
        run_id, worker, record.msg_id, record.stream, record.attempt, record.server,
        f"{record.intended:.6f}", f"{record.due:.6f}", f"{record.start:.6f}",
        f"{record.connected:.6f}" if record.connected else "", f"{record.end:.6f}",
        record.phase.value, record.code or "", record.enhanced, record.outcome.value,
        record.bytes, record.recipients, record.recipients_refused, int(record.new_connection),
        int(record.attempt > 1), int(failover), int(final), int(record.maybe_duplicate),
        record.error,
    )  # fmt: skip


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
            self._writer.writerow(ATTEMPT_FIELDS)
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
