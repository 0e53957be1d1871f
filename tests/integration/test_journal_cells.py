"""Journal cells a spreadsheet would run as a formula are written as text, and read back as sent.

A value a client controls (MAIL FROM, X-Maildrill-Id, Message-ID, EHLO) that starts with
`=`, `+`, `-`, `@`, a tab or a CR gets a leading `'` in the CSV; so does a value that starts
with `'` itself, so that the reader can take exactly one `'` off and get every value back.
"""

from __future__ import annotations

import csv
import io
import smtplib
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from loadtest.analysis import journals
from loadtest.journal import AttemptsJournal
from maildrill.journal import CsvJournal
from maildrill.records import AttemptRecord, ReceiptRecord

# All atext: a sink keeps it as sent (aiosmtpd would re-quote the OWASP example's spaces,
# `"=cmd|' /C calc'!A0"@x.test`, which starts with a quote; that one is sent too).
SENDER = "=cmd|'/Ccalc'!A0@x.test"
SPACED = "=cmd|' /C calc'!A0@x.test"
MAILDRILL_ID = "+1+1"
MESSAGE_ID = "-2"


def raw_rows(path: Path) -> list[dict[str, str]]:
    """The cells as a spreadsheet gets them: the CSV file, no maildrill reader in between."""
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def send(port: int, helo: str, msg_id: str, message_id: str, sender: str = SENDER) -> None:
    text = (
        f"From: x@x.test\r\nTo: y@example.com\r\nSubject: cells\r\n"
        f"Message-ID: {message_id}\r\nX-Maildrill-Id: {msg_id}\r\n\r\nHello.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=5) as client:
        client.ehlo(helo)
        # smtplib would quote the spaces: the path goes as a hostile client sends it.
        code, reply = client.docmd(f"MAIL FROM:<{sender}>")
        assert code == 250, reply
        assert client.rcpt("y@example.com")[0] == 250
        code, reply = client.data(text.encode())
        assert code == 250, reply


def test_a_real_sink_journals_formula_looking_values_as_text_and_reads_them_back(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    port = sinks.port("primary")
    send(port, "@SUM(1)", MAILDRILL_ID, MESSAGE_ID)
    send(port, "-1+1.test", "'quoted", "@x")
    send(port, "ok.test", '=HYPERLINK("x")', "+x", sender=SPACED)
    path = sinks.journal_dir / "receipts-primary.csv"
    first, second, third = raw_rows(path)
    assert first["mail_from"] == "'" + SENDER
    assert first["msg_id"] == "'" + MAILDRILL_ID
    assert first["message_id"] == "'" + MESSAGE_ID
    assert first["helo"] == "?SUM?1?"  # the EHLO name is cleaned: nothing left to run
    assert second["helo"] == "'-1?1.test"
    assert second["msg_id"] == "''quoted"  # the escape itself is escaped: it round-trips
    assert second["message_id"] == "'@x"
    assert third["mail_from"] in ("'" + SPACED, "\"=cmd|' /C calc'!A0\"@x.test")
    # Every cell of the file, not only the ones checked: none starts a formula.
    for row in (first, second, third):
        assert not any(v[:1] in ("=", "+", "-", "@", "\t", "\r") for v in row.values()), row
    # The analysis gets the originals back.
    loaded = journals.load_kind(sinks.journal_dir, "receipts")
    spaced = SPACED if third["mail_from"].startswith("'") else third["mail_from"]
    assert list(loaded["mail_from"]) == [SENDER, SENDER, spaced]
    assert list(loaded["msg_id"]) == [MAILDRILL_ID, "'quoted", '=HYPERLINK("x")']
    assert list(loaded["message_id"]) == [MESSAGE_ID, "@x", "+x"]
    assert list(loaded["helo"]) == ["?SUM?1?", "-1?1.test", "ok.test"]
    assert list(loaded["size"]) == [int(r["size"]) for r in (first, second, third)]


def test_a_refusal_journals_the_sender_as_text(start_sinks):
    reject = {"kind": "reject", "stage": "rcpt", "code": 550, "enhanced": "5.7.1", "text": "no"}
    sinks = start_sinks({"sinks": [{"name": "primary", "behaviours": [reject]}]})
    with sinks.smtp("primary") as client:
        client.ehlo("ok.test")
        assert client.docmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert client.rcpt("y@example.com")[0] == 550
    (row,) = raw_rows(sinks.journal_dir / "refusals-primary.csv")
    assert row["mail_from"] == "'" + SENDER
    loaded = journals.load_kind(sinks.journal_dir, "refusals")
    assert list(loaded["mail_from"]) == [SENDER]


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(texts, min_size=6, max_size=6))
@example(values=["'", "''", "'=1", "=1", "-", "\t"])
@example(values=["\r\n=x", "@", "+", ",", '"', ""])
def test_any_text_round_trips_through_the_sink_journal(tmp_path_factory, values):
    directory = tmp_path_factory.mktemp("cells")
    text = ("peer", "message_id", "mail_from", "outcome", "queue_id", "helo")
    journal = CsvJournal(directory / "receipts-x.csv", ReceiptRecord)
    for at, msg_id, size in ((1.5, values[0], 10), (2.5, "m2", 20)):
        journal.write(
            ReceiptRecord(
                time=at, sink="x", worker=0, session="x.1", msg_id=msg_id, rcpt_count=1,
                size=size, **dict(zip(text, values, strict=True)),
            )
        )  # fmt: skip
    journal.close()
    with (directory / "receipts-x.csv").open(newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f))[1:]:
            assert not any(c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in row), row
    loaded = journals.load_kind(directory, "receipts")
    for name, value in zip(text, values, strict=True):
        assert list(loaded[name]) == [value, value]
    assert list(loaded["msg_id"]) == [values[0], "m2"]
    assert list(loaded["size"]) == [10, 20]


@settings(max_examples=100, deadline=None)
@given(error=texts, enhanced=texts)
def test_any_reply_text_round_trips_through_the_attempts_journal(tmp_path_factory, error, enhanced):
    """The attempts journal holds server reply text (enhanced code, error): the same rule."""
    directory = tmp_path_factory.mktemp("attempts")
    journal = AttemptsJournal(directory / "attempts.csv")
    record = AttemptRecord(
        run_id="r", worker="local", msg_id="m", stream="s", attempt=1, server="primary",
        intended=1.0, due=1.0, start=1.0, connected=None, end=1.0, phase="-", code=None,
        enhanced=enhanced, outcome="refused", bytes=0, recipients=1, recipients_refused=0,
        new_connection=True, retry=False, failover=False, final=True, maybe_duplicate=False,
        error=error,
    )  # fmt: skip
    journal.write([record.row()])
    journal.close()
    text = (directory / "attempts.csv").read_text(encoding="utf-8")
    (row,) = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["phase"] == "'-"
    loaded = journals.load_kind(directory, "attempts")
    assert list(loaded["error"]) == [error]
    assert list(loaded["enhanced"]) == [enhanced]
    assert list(loaded["phase"]) == ["-"]
