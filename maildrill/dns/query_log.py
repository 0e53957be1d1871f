"""dns-queries.csv: every question the run's DNS server was asked, and what it answered.

What a later analysis needs to tell when each sender could have seen a DNS change: the
moment of the query, the name and type, the answer's rcode (`none`: a `timeout` fault
sent nothing), the records of the asked type (addresses, `PREF HOST` for MX) and their
TTL (a negative answer's: the SOA's, RFC 2308), which DNS faults acted, and who asked
(the peer's address: each Postfix instance sends from its own). One row a
line, flushed as written (`maildrill.journal.CsvJournal`), and bounded: after
MAX_ROWS rows one last row says the rest went unjournaled (a resolver in a loop must not
fill the disk).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import dns.message
import dns.rcode
import dns.rdatatype

from maildrill.journal import CsvJournal
from maildrill.records import DnsQueryRecord

FILE = "dns-queries.csv"
MAX_ROWS = 1_000_000
TRUNCATED = "journal-full"  # the rcode of the last row once MAX_ROWS were written
NO_ANSWER = "none"


class QueryLog:
    def __init__(self, journal: CsvJournal, max_rows: int = MAX_ROWS) -> None:
        self.journal = journal
        self.max_rows = max_rows

    def write(
        self,
        query: dns.message.Message,
        response: dns.message.Message | None,
        transport: str,
        acted: Sequence[str] = (),
        delay: float = 0.0,
        peer: str = "",
    ) -> None:
        """One row for `query`: `response` None when none was sent (a timeout fault),
        `acted` the DNS faults that changed it, `delay` the seconds it was held back."""
        if self.journal.rows > self.max_rows or len(query.question) != 1:
            return
        now = time.time()
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        if self.journal.rows == self.max_rows:
            row = DnsQueryRecord(now, name, rtype, TRUNCATED, "", None, "", transport, peer=peer)
            self.journal.write(row)
            return
        answers = (
            [] if response is None else [r for r in response.answer if r.rdtype == question.rdtype]
        )
        ttls = [r.ttl for r in answers] or [
            r.ttl for r in (response.authority if response is not None else [])
        ]
        self.journal.write(
            DnsQueryRecord(
                time=now,
                name=name,
                type=rtype,
                rcode=NO_ANSWER if response is None else dns.rcode.to_text(response.rcode()),
                answers=";".join(rd.to_text() for rrset in answers for rd in rrset),
                ttl=min(ttls) if ttls else None,
                fault_id=" ".join(acted),
                transport=transport,
                delay_ms=round(delay * 1000.0, 3),
                peer=peer,
            )
        )
