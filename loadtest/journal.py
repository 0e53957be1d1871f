"""The attempts journal: one CSV row per SMTP attempt, the contract with the analysis."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loadtest.client import Attempt

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
    """Append-only, flushed per batch; rows from workers arrive in batches at the master."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if self._file.tell() == 0:
            self._writer.writerow(ATTEMPT_FIELDS)
            self._file.flush()
        self.rows = 0

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        n = 0
        for row in rows:
            self._writer.writerow(row)
            n += 1
        self._file.flush()
        self.rows += n

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
