"""A plain sink receives, journals before replying, and reports counters."""

from __future__ import annotations

import smtplib

import pytest

from tests.helpers import message, read_csv


def test_accepts_and_journals_every_message(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    with sinks.smtp("primary") as client:
        for i in range(5):
            client.sendmail("a@example.com", ["b@gmail.test", "c@yahoo.test"], message(f"m{i}"))
    rows = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert [r["msg_id"] for r in rows] == [f"m{i}" for i in range(5)]
    assert {r["message_id"] for r in rows} == {f"<m{i}@maildrill.test>" for i in range(5)}
    assert all(r["rcpt_count"] == "2" and r["outcome"] == "accepted" for r in rows)
    assert {r["rcpts"] for r in rows} == {"b@gmail.test c@yahoo.test"}  # which ones: in order
    counters = sinks.sink("primary").counters
    assert counters.accepted == 5
    assert counters.bytes == sum(int(r["size"]) for r in rows)


def test_dot_stuffing_is_undone_and_size_is_exact(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    body = ".leading dot\r\nmiddle.\r\n..\r\n.\r\nend.\r\n"
    text = message("dots", body=body)
    with sinks.smtp("primary") as client:
        client.sendmail("a@example.com", ["b@example.com"], text)
    (row,) = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert int(row["size"]) == len(text.encode())


def test_single_line_message_without_body(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    with sinks.smtp("primary") as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: x\r\n.\r\n")
        code, reply = client.getreply()
        assert code == 250, reply
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        assert client.docmd("DATA")[0] == 354
        client.send(b".\r\n")
        assert client.getreply()[0] == 250
    rows = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert [int(r["size"]) for r in rows] == [len(b"Subject: x\r\n"), 0]


def test_size_limit_gives_552_and_session_continues(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary", "size_limit": 2000}]})
    big = message("big", body="x" * 70 + "\r\n") + ("y" * 78 + "\r\n") * 60
    with sinks.smtp("primary") as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "2000"
        # Declared with SIZE=: refused at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], big)
        assert refused.value.smtp_code == 552
        assert refused.value.smtp_error.startswith(b"5.3.4")
        # Not declared: the sink reads it all, then refuses after the dot.
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        code, reply = client.data(big)
        assert (code, reply[:5]) == (552, b"5.3.4")
        client.sendmail("a@example.com", ["b@example.com"], message("small"))
    rows = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert [r["msg_id"] for r in rows] == ["small"]
    refusals = read_csv(sinks.journal_dir / "refusals-primary.csv")
    assert [(r["stage"], r["code"], r["enhanced"]) for r in refusals] == [
        ("mail", "552", "5.3.4"),
        ("dot", "552", "5.3.4"),
    ]


def test_a_journal_of_another_layout_is_not_appended_to(start_sinks, tmp_path):
    """Rows of a new layout under an old header would all be skipped as malformed."""
    journals = tmp_path / "old"
    journals.mkdir()
    (journals / "receipts-mx.csv").write_text("time,sink,worker,msg_id\n1.0,mx,0,a\n")
    with pytest.raises(ValueError, match=r"receipts-mx\.csv: written by another maildrill"):
        start_sinks({"sinks": [{"name": "mx"}]}, journal_dir=journals)
    assert (journals / "receipts-mx.csv").read_text() == "time,sink,worker,msg_id\n1.0,mx,0,a\n"
