"""The DNS server's two journals in a run directory, attached to its authority: its
faults in faults-dns.csv (a sink's faults journal's columns, `sink: dns`, so the fault
windows analysis reads it as it reads theirs) and every query in dns-queries.csv."""

from __future__ import annotations

from pathlib import Path

from maildrill.dns.board import NAME, FaultBoard
from maildrill.dns.query_log import FILE, QueryLog
from maildrill.dns.server import Authority
from maildrill.journal import CsvJournal
from maildrill.paths import inside
from maildrill.records import DnsQueryRecord, FaultRecord

FAULTS_FILE = f"faults-{NAME}.csv"


def keep_journals(authority: Authority, directory: Path) -> list[CsvJournal]:
    """A fault board journaling to DIRECTORY/faults-dns.csv and a query log to
    DIRECTORY/dns-queries.csv, given to `authority`; the journals, for the caller to close."""
    faults = CsvJournal(inside(directory, FAULTS_FILE), FaultRecord)
    queries = CsvJournal(inside(directory, FILE), DnsQueryRecord)
    authority.board = FaultBoard(faults)
    authority.log = QueryLog(queries)
    return [faults, queries]
