"""The journal records (maildrill.records): the files they make are the files run directories
already hold, and what the writer writes the analysis reads back with the right types."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field, fields

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.analysis import journals
from loadtest.analysis.rundir import JOURNAL_PATTERNS
from loadtest.client import Attempt
from loadtest.outcomes import Outcome, Phase
from maildrill.journal import CsvJournal, JournalTail, RowWriter
from maildrill.records import (
    RECORDS,
    AttemptRecord,
    FaultRecord,
    Kind,
    MtaQueueRecord,
    ProbeRecord,
    ProxyRecord,
    ReceiptRecord,
    Record,
    RefusalRecord,
    RelayRecord,
    epoch,
)

T = 1_800_000_000.0

# The headers of the journals as written before the records (ATTEMPT_FIELDS, RECEIPT_FIELDS,
# REFUSAL_FIELDS, FAULT_FIELDS, RELAY_FIELDS, PROXY_FIELDS, PROBE_FIELDS, MTA_QUEUE_FIELDS):
# every run directory on disk has these.
HEADERS = {
    "attempts": "run_id,worker,msg_id,stream,attempt,server,intended,due,start,connected,end,"
    "phase,code,enhanced,outcome,bytes,recipients,recipients_refused,new_connection,retry,"
    "failover,final,maybe_duplicate,error",
    "receipts": "time,sink,worker,session,peer,msg_id,message_id,mail_from,rcpt_count,size,"
    "outcome,queue_id,helo",
    "refusals": "time,sink,worker,session,peer,stage,code,enhanced,mail_from,rcpt_count,msg_id",
    "faults": "time,sink,worker,kind,state,fault_id,origin,params",
    "relay": "time,sink,worker,msg_id,queue_id,event,upstream,attempt,code,enhanced,error,"
    "queued_at",
    "proxy": "time,proxy,session,peer,event,msg_id,code,size,bytes_up,bytes_down,cause,detail",
    "probes": "time,server,ok,phase,code,outcome,latency_ms,error",
    "mta_queue": "time,mta,msg_id,queue",
}
# Columns added since, each at the end of its journal with a default, so an older journal
# without them still reads: a record's header today is the old one followed by these.
ADDED = {
    "attempts": ("rcpt_replies", "addr", "dns_name", "dns_ttl", "dns_at"),
    "receipts": (
        "rcpts", "spf", "dkim", "dkim_domain", "dmarc", "dmarc_policy", "ptr", "auth_detail",
    ),
    "mta_queue": ("rcpts",),
    "refusals": (
        "helo", "spf", "dkim", "dkim_domain", "dmarc", "dmarc_policy", "ptr", "auth_detail",
    ),
}  # fmt: skip


def header_now(kind: str) -> str:
    return ",".join([HEADERS[kind], *ADDED.get(kind, ())])


# One record of each journal, and its line as the writers before the records wrote it
# (times with microseconds, flags 1/0, no reply code or no time as an empty cell).
SAMPLES: dict[str, list[tuple[Record, str]]] = {
    "attempts": [
        (
            AttemptRecord(
                run_id="r1", worker="local", msg_id="r1-7", stream="promotional", attempt=2,
                server="secondary", intended=T, due=T + 1.5, start=T + 1.5,
                connected=T + 1.5002, end=T + 1.6, phase="dot", code=250, enhanced="2.0.0",
                outcome="accepted", bytes=5120, recipients=2, recipients_refused=1,
                new_connection=True, retry=True, failover=True, final=True,
                maybe_duplicate=False, error="",
            ),
            "r1,local,r1-7,promotional,2,secondary,1800000000.000000,1800000001.500000,"
            "1800000001.500000,1800000001.500200,1800000001.600000,dot,250,2.0.0,accepted,"
            "5120,2,1,1,1,1,1,0,,,,,,",
        ),
        (
            AttemptRecord(
                run_id="r1", worker="w-2", msg_id="r1-8", stream="promotional", attempt=1,
                server="primary", intended=T, due=T, start=T + 0.1, connected=None,
                end=T + 3.1, phase="connect", code=None, enhanced="", outcome="refused",
                bytes=0, recipients=1, recipients_refused=0, new_connection=True, retry=False,
                failover=False, final=False, maybe_duplicate=False,
                error="ConnectionRefusedError",
            ),
            "r1,w-2,r1-8,promotional,1,primary,1800000000.000000,1800000000.000000,"
            "1800000000.100000,,1800000003.100000,connect,,,refused,0,1,0,1,0,0,0,0,"
            "ConnectionRefusedError,,,,,",
        ),
        (
            AttemptRecord(
                run_id="r1", worker="local", msg_id="r1-9", stream="promotional", attempt=1,
                server="primary", intended=T, due=T, start=T + 0.2, connected=T + 0.201,
                end=T + 0.3, phase="dot", code=250, enhanced="2.0.0", outcome="accepted",
                bytes=100, recipients=1, recipients_refused=0, new_connection=True, retry=False,
                failover=False, final=True, maybe_duplicate=False, error="", rcpt_replies="250",
                addr="127.0.0.12", dns_name="smtp.shop.test", dns_ttl=2, dns_at=T + 0.15,
            ),
            "r1,local,r1-9,promotional,1,primary,1800000000.000000,1800000000.000000,"
            "1800000000.200000,1800000000.201000,1800000000.300000,dot,250,2.0.0,accepted,"
            "100,1,0,1,0,0,1,0,,250,127.0.0.12,smtp.shop.test,2,1800000000.150000",
        ),
    ],
    "receipts": [
        (
            ReceiptRecord(
                time=T + 0.25, sink="primary", worker=1, session="primary.3", peer="127.0.0.1",
                msg_id="r1-7", message_id="<a@x.test>", mail_from="-news@x.test", rcpt_count=2,
                size=5120, outcome="accepted", queue_id="primary.3.1", helo="relay.test",
                rcpts="a@x.test b@y.test", spf="pass", dkim="fail", dkim_domain="x.test",
                dmarc="pass", dmarc_policy="reject", ptr="none",
                auth_detail="dkim x.test: fail; ptr: no PTR for 127.0.0.1",
            ),
            "1800000000.250000,primary,1,primary.3,127.0.0.1,r1-7,<a@x.test>,'-news@x.test,2,"
            "5120,accepted,primary.3.1,relay.test,a@x.test b@y.test,pass,fail,x.test,pass,"
            "reject,none,dkim x.test: fail; ptr: no PTR for 127.0.0.1",
        )
    ],
    "refusals": [
        (
            RefusalRecord(
                time=T + 0.5, sink="primary", worker=0, session="primary.4", peer="::1",
                stage="rcpt", code="450", enhanced="4.2.0", mail_from="a@x.test", rcpt_count=1,
                msg_id="",
            ),
            "1800000000.500000,primary,0,primary.4,::1,rcpt,450,4.2.0,a@x.test,1,,,,,,,,,",
        ),
        (
            RefusalRecord(
                time=T + 0.75, sink="gmail", worker=0, session="gmail.2", peer="127.0.0.12",
                stage="dot", code="550", enhanced="5.7.26", mail_from="a@shop.test",
                rcpt_count=1, msg_id="r1-9", helo="mx2.shop.test", spf="fail", dkim="none",
                dkim_domain="", dmarc="fail", dmarc_policy="reject", ptr="pass",
                auth_detail="spf: 127.0.0.12 not permitted",
            ),
            "1800000000.750000,gmail,0,gmail.2,127.0.0.12,dot,550,5.7.26,a@shop.test,1,r1-9,"
            "mx2.shop.test,fail,none,,fail,reject,pass,spf: 127.0.0.12 not permitted",
        ),
    ],
    "faults": [
        (
            FaultRecord(
                time=T + 4, sink="primary", worker=0, kind="down", state="start",
                fault_id="down-1", origin="schedule", params='{"duration": 3}',
            ),
            '1800000004.000000,primary,0,down,start,down-1,schedule,"{""duration"": 3}"',
        )
    ],
    "relay": [
        (
            RelayRecord(
                time=T + 6, sink="bk", worker=0, msg_id="r1-1", queue_id="q1", event="forwarded",
                upstream="127.0.0.1:2525", attempt=1, code=250, enhanced="2.0.0", error="",
                queued_at=T + 5,
            ),
            "1800000006.000000,bk,0,r1-1,q1,forwarded,127.0.0.1:2525,1,250,2.0.0,,"
            "1800000005.000000",
        ),
        (
            RelayRecord(
                time=T + 7, sink="bk", worker=0, msg_id="r1-2", queue_id="q2", event="deferred",
                upstream="127.0.0.1:2525", attempt=2, code=None, enhanced="",
                error="ConnectionRefusedError", queued_at=T + 5.5,
            ),
            "1800000007.000000,bk,0,r1-2,q2,deferred,127.0.0.1:2525,2,,,ConnectionRefusedError,"
            "1800000005.500000",
        ),
    ],
    "proxy": [
        (
            ProxyRecord(time=T + 1, proxy="edge", session="edge.1", peer="127.0.0.1", event="open"),
            "1800000001.000000,edge,edge.1,127.0.0.1,open,,,,,,,",
        ),
        (
            ProxyRecord(
                time=T + 2, proxy="edge", session="edge.1", peer="127.0.0.1", event="message",
                msg_id="r1-1", code=250, size=5120, cause="drop",
            ),
            "1800000002.000000,edge,edge.1,127.0.0.1,message,r1-1,250,5120,,,drop,",
        ),
        (
            ProxyRecord(
                time=T + 3, proxy="edge", session="edge.1", peer="127.0.0.1", event="close",
                bytes_up=6000, bytes_down=400, cause="client", detail="starttls",
            ),
            "1800000003.000000,edge,edge.1,127.0.0.1,close,,,,6000,400,client,starttls",
        ),
    ],
    "probes": [
        (
            ProbeRecord(
                time=T + 0.75, server="primary", ok=True, phase="quit", code=250, outcome="ok",
                latency_ms=1.234, error="",
            ),
            "1800000000.750000,primary,1,quit,250,ok,1.234,",
        ),
        (
            ProbeRecord(
                time=T + 1.75, server="primary", ok=False, phase="connect", code=0,
                outcome="refused", latency_ms=0.4, error="SMTPConnectError",
            ),
            "1800000001.750000,primary,0,connect,0,refused,0.4,SMTPConnectError",
        ),
    ],
    "mta_queue": [
        (
            MtaQueueRecord(
                time=T + 30, mta="mta", msg_id="r1-9", queue="deferred", rcpts="b@y.test"
            ),
            "1800000030.000000,mta,r1-9,deferred,b@y.test",
        )
    ],
}  # fmt: skip


def test_every_journal_the_analysis_reads_has_a_record():
    assert RECORDS.keys() == JOURNAL_PATTERNS.keys() == HEADERS.keys() == SAMPLES.keys()


@pytest.mark.parametrize("kind", HEADERS)
def test_a_record_writes_the_journal_old_runs_hold(tmp_path, kind):
    record = RECORDS[kind]
    assert ",".join(record.header()) == header_now(kind)
    journal = CsvJournal(tmp_path / "j.csv", record)
    for sample, _ in SAMPLES[kind]:
        journal.write(sample)
    journal.close()
    lines = [header_now(kind), *(line for _, line in SAMPLES[kind])]
    assert (tmp_path / "j.csv").read_text(encoding="utf-8") == "\n".join(lines) + "\n"


@pytest.mark.parametrize("read", [journals._read_clean, journals._read_careful])
@pytest.mark.parametrize("kind", HEADERS)
def test_what_a_record_writes_the_analysis_reads_back_typed(tmp_path, kind, read):
    record = RECORDS[kind]
    path = tmp_path / "j.csv"
    journal = CsvJournal(path, record)
    for sample, _ in SAMPLES[kind]:
        journal.write(sample)
    journal.close()
    result = read(path, kind)
    if result is None:  # the fast reader declines quoted cells (the faults' JSON)
        assert b'"' in path.read_bytes()
        return
    frame, damage = result
    assert damage.skipped == 0
    assert list(frame.columns) == list(record.header())
    for column in record.columns():
        values = [getattr(sample, column.name) for sample, _ in SAMPLES[kind]]
        got = list(frame[column.name])
        if column.numeric:
            # float64 (the fast reader) or int64 (the careful one, a column of whole numbers)
            assert frame[column.name].dtype in ("float64", "int64"), column
            for want, have in zip(values, got, strict=True):
                assert math.isnan(have) if want is None else have == float(want), column
        else:
            assert pd.api.types.is_string_dtype(frame[column.name]), column
            assert got == [str(v) for v in values], column


@pytest.mark.parametrize("kind", HEADERS)
def test_the_reader_types_every_column_of_every_record(kind):
    """A column the reader did not type would be read as text and compared as text (or
    the other way round): a field added to a record must say its kind."""
    record = RECORDS[kind]
    numeric = set(journals.NUMERIC[kind])
    assert numeric <= set(record.header())
    for column in record.columns():
        assert isinstance(column.kind, Kind)
        assert (column.name in numeric) == (column.kind is not Kind.TEXT), column
    assert set(journals.REQUIRED[kind]) == {c.name for c in record.columns() if c.required}


def test_a_field_without_a_column_kind_is_refused():
    @dataclass(frozen=True, slots=True)
    class Untyped(Record):
        time: float = field(metadata=epoch(required=True))
        note: str = ""

    with pytest.raises(TypeError, match=r"Untyped\.note: no column kind"):
        Untyped.header()


def test_every_field_of_the_senders_draft_reaches_the_journal():
    """loadtest.client.Attempt is filled in by the sender; a field it gains and the
    record lacks would never be journaled."""
    draft = Attempt(
        msg_id="r1-7", stream="promotional", attempt=2, server="secondary", intended=T,
        due=T + 1.5, start=T + 1.5, connected=T + 1.5002, end=T + 1.6, phase=Phase.DOT,
        code=250, enhanced="2.0.0", outcome=Outcome.ACCEPTED, bytes=5120, recipients=2,
        recipients_refused=1, new_connection=True, maybe_duplicate=False, error="",
    )  # fmt: skip
    record = draft.as_record("r1", "local", failover=True, final=True)
    assert record == SAMPLES["attempts"][0][0]
    # `replies` (each RCPT's reply) is journaled as rcpt_replies, by the driver, which
    # knows each recipient's place in its message.
    drafts_only = {"replies"}
    assert {f.name for f in fields(Attempt)} - drafts_only <= set(AttemptRecord.header())
    unanswered = Attempt(msg_id="m", stream="s", attempt=1, server="p", intended=T, due=T, start=T)
    record = unanswered.as_record("r1", "local", failover=False, final=False)
    assert (record.connected, record.code, record.retry) == (None, None, False)


@pytest.mark.parametrize("kind", HEADERS)
def test_a_row_parses_back_to_its_record(kind):
    record = RECORDS[kind]
    out = io.StringIO()
    writer = RowWriter(out)
    for sample, _ in SAMPLES[kind]:
        writer.writerow(sample.row())
    rows = list(csv.DictReader(io.StringIO(header_now(kind) + "\n" + out.getvalue())))
    parsed = [record.parse({k: v.removeprefix("'") for k, v in row.items()}) for row in rows]
    assert parsed == [sample for sample, _ in SAMPLES[kind]]


def test_a_column_an_older_journal_lacks_takes_its_default():
    cells = {"time": "1.5", "proxy": "edge", "session": "edge.1", "peer": "", "event": "open"}
    assert ProxyRecord.parse(cells) == ProxyRecord(1.5, "edge", "edge.1", "", "open")
    with pytest.raises(ValueError, match="'event'"):
        ProxyRecord.parse({k: v for k, v in cells.items() if k != "event"})
    with pytest.raises(ValueError, match="soon"):
        ProxyRecord.parse(cells | {"time": "soon"})


@pytest.mark.parametrize("kind", sorted(ADDED))
def test_a_journal_from_before_a_column_was_added_still_reads(tmp_path, kind):
    """The old header and line (the sample without its added cells): the record takes
    each added column's default, and the analysis reads the file without it."""
    record = RECORDS[kind]
    sample, line = SAMPLES[kind][0]
    added = ADDED[kind]
    old_line = line.rsplit(",", len(added))[0]
    cells = next(csv.DictReader(io.StringIO(HEADERS[kind] + "\n" + old_line + "\n")))
    defaults = {f.name: f.default for f in fields(record) if f.name in added}
    parsed = record.parse({k: v.removeprefix("'") for k, v in cells.items()})
    assert parsed == dataclasses.replace(sample, **defaults)
    path = tmp_path / JOURNAL_PATTERNS[kind].replace("*", "-old")
    path.write_text(HEADERS[kind] + "\n" + old_line + "\n", encoding="utf-8")
    frame, damage = journals.read_journal(path, kind)
    assert damage.skipped == 0
    assert len(frame) == 1
    assert not set(added) & set(frame.columns)


def test_a_journal_takes_only_its_own_records_and_layout(tmp_path):
    path = tmp_path / "receipts-x.csv"
    journal = CsvJournal(path, ReceiptRecord)
    with pytest.raises(TypeError, match="FaultRecord"):
        journal.write(SAMPLES["faults"][0][0])
    journal.close()
    with pytest.raises(ValueError, match="other columns"):
        CsvJournal(path, FaultRecord)
    CsvJournal(path, ReceiptRecord).close()  # the same layout: appended to


def test_a_tail_returns_the_records_of_complete_lines_only(tmp_path):
    path = tmp_path / "attempts.csv"
    tail = JournalTail(path, AttemptRecord)
    assert tail.poll() == []  # not there yet
    (first, first_line), (second, second_line) = SAMPLES["attempts"][:2]
    with path.open("w", encoding="utf-8") as f:
        f.write(header_now("attempts") + "\n" + first_line + "\n" + second_line[:30])
    assert tail.poll() == [first]
    with path.open("a", encoding="utf-8") as f:
        f.write(second_line[30:] + "\n" + "r1,local,broken\n")
    assert tail.poll() == [second]
    assert tail.skipped == 1
    assert tail.poll() == []


def test_a_tail_of_columns_reads_what_the_records_hold(tmp_path):
    """poll_columns gives the cells poll's records are made of, lines completed only; a
    line of the wrong length is skipped, a column the journal lacks reads ""."""
    path = tmp_path / "attempts.csv"
    records, columns = JournalTail(path, AttemptRecord), JournalTail(path, AttemptRecord)
    (first, first_line), (second, second_line) = SAMPLES["attempts"][:2]
    names = ("final", "outcome", "end", "server", "no_such_column")
    with path.open("w", encoding="utf-8") as f:
        f.write(header_now("attempts") + "\n" + first_line + "\n" + second_line[:30])
    assert columns.poll_columns(names) == [("1", "accepted", "1800000001.600000", "secondary", "")]
    with path.open("a", encoding="utf-8") as f:
        f.write(second_line[30:] + "\n" + "r1,local,broken\n")
    assert columns.poll_columns(names) == [("0", "refused", "1800000003.100000", "primary", "")]
    assert columns.skipped == 1
    for record, cells in zip(records.poll(), [("1", "accepted"), ("0", "refused")], strict=True):
        assert (str(int(record.final)), record.outcome) == cells
    assert [first.end, second.end] == [T + 1.6, T + 3.1]


_CELL_TEXT = st.text(
    alphabet=st.sampled_from("a1 ,\"'=+-@\t\r\n\uff1d\uff0b\uff0d\uff20."), max_size=6
)


@settings(max_examples=400)
@given(
    st.lists(
        st.one_of(_CELL_TEXT, st.integers(-9, 9), st.floats(-2, 2), st.none(), st.booleans()),
        max_size=8,
    )
)
def test_a_rows_fast_path_writes_what_escaping_every_cell_writes(row):
    """RowWriter formats a row as it is and escapes only when the line says a cell may
    need it: the bytes must be those of `cell` on every value, whatever the row holds."""
    fast, careful = io.StringIO(), io.StringIO()
    RowWriter(fast).writerow(row)
    RowWriter(careful)._careful(row)
    assert fast.getvalue() == careful.getvalue()
