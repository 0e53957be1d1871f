"""The three journals of one sink process: receipts, refusals and faults.

Their columns are `maildrill.records`; how rows are written (flushed record by record,
cells escaped) is `maildrill.journal`.
"""

from __future__ import annotations

from pathlib import Path

from maildrill.journal import CsvJournal
from maildrill.paths import inside
from maildrill.records import FaultRecord, ReceiptRecord, RefusalRecord


class SinkJournals:
    """The three journals of one sink process: receipts, refusals, faults."""

    def __init__(self, directory: Path, sink: str, worker: int) -> None:
        suffix = sink if worker == 0 else f"{sink}-w{worker}"
        self.receipts = CsvJournal(inside(directory, f"receipts-{suffix}.csv"), ReceiptRecord)
        self.refusals = CsvJournal(inside(directory, f"refusals-{suffix}.csv"), RefusalRecord)
        self.faults = CsvJournal(inside(directory, f"faults-{suffix}.csv"), FaultRecord)

    def close(self) -> None:
        for journal in (self.receipts, self.refusals, self.faults):
            journal.close()
