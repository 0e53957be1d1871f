"""The journals a sink writes: their columns, and the three files of one sink process.

How rows are written (flushed record by record, cells escaped) is `maildrill.journal`.
"""

from __future__ import annotations

from pathlib import Path

from maildrill.journal import CsvJournal
from maildrill.paths import inside

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


class SinkJournals:
    """The three journals of one sink process: receipts, refusals, faults."""

    def __init__(self, directory: Path, sink: str, worker: int) -> None:
        suffix = sink if worker == 0 else f"{sink}-w{worker}"
        self.receipts = CsvJournal(inside(directory, f"receipts-{suffix}.csv"), RECEIPT_FIELDS)
        self.refusals = CsvJournal(inside(directory, f"refusals-{suffix}.csv"), REFUSAL_FIELDS)
        self.faults = CsvJournal(inside(directory, f"faults-{suffix}.csv"), FAULT_FIELDS)

    def close(self) -> None:
        for journal in (self.receipts, self.refusals, self.faults):
            journal.close()
