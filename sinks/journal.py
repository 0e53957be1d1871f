"""Append-only CSV journals, flushed record by record.

A record is written to the OS before the sink sends the reply it describes, so a sink
killed with SIGKILL loses nothing it acknowledged (the page cache survives the process).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RECEIPT_FIELDS = (
    "time",
    "sink",
    "worker",
    "session",
    "peer",
    "msg_id",
    "message_id",
    "mail_from",
    "rcpt_count",
    "size",
    "outcome",
    "queue_id",
    "helo",  # the EHLO name of who delivered it: which relay, through an MTA
)
REFUSAL_FIELDS = (
    "time",
    "sink",
    "worker",
    "session",
    "peer",
    "stage",
    "code",
    "enhanced",
    "mail_from",
    "rcpt_count",
    "msg_id",
)
FAULT_FIELDS = ("time", "sink", "worker", "kind", "state", "fault_id", "origin", "params")
# A proxy's connections and the messages it saw go by (sinks.proxy): event open, message
# (msg_id, code = the server's reply to the final dot, size, cause = the fault that cut
# it) or close (bytes each way, cause = what ended it: client, server or a fault).
PROXY_FIELDS = (
    "time", "proxy", "session", "peer", "event", "msg_id", "code", "size", "bytes_up",
    "bytes_down", "cause", "detail",
)  # fmt: skip


def stamp() -> str:
    """Epoch seconds with microseconds, the journals' one time format."""
    return f"{time.time():.6f}"


class CsvJournal:
    """One CSV file with a header row; `write` appends one row and flushes it."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if self._file.tell() == 0:
            self._writer.writerow(fields)
            self._file.flush()
        else:
            # Appending rows of another layout would make every one of them unreadable.
            with path.open(encoding="utf-8", errors="replace") as existing:
                header = existing.readline().rstrip("\r\n")
            if header != ",".join(fields):
                self._file.close()
                raise ValueError(
                    f"{path}: written by another maildrill version (other columns); "
                    "use a new journal directory"
                )
        self.rows = 0

    def write(self, row: Sequence[Any]) -> None:
        self._writer.writerow(row)
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


class SinkJournals:
    """The three journals of one sink process: receipts, refusals, faults."""

    def __init__(self, directory: Path, sink: str, worker: int) -> None:
        suffix = sink if worker == 0 else f"{sink}-w{worker}"
        self.receipts = CsvJournal(directory / f"receipts-{suffix}.csv", RECEIPT_FIELDS)
        self.refusals = CsvJournal(directory / f"refusals-{suffix}.csv", REFUSAL_FIELDS)
        self.faults = CsvJournal(directory / f"faults-{suffix}.csv", FAULT_FIELDS)

    def close(self) -> None:
        for journal in (self.receipts, self.refusals, self.faults):
            journal.close()
