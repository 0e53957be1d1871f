"""The attempts journal: rows reach the file whole, at once or within the flush window."""

from __future__ import annotations

import pytest

from loadtest.journal import AttemptsJournal
from maildrill.records import AttemptRecord
from tests.helpers import read_csv

ATTEMPT_FIELDS = AttemptRecord.header()
ROW = AttemptRecord(
    run_id="run", worker="local", msg_id="run-1", stream="promotional", attempt=1,
    server="primary", intended=1.0, due=1.0, start=1.0, connected=1.0, end=1.001, phase="dot",
    code=250, enhanced="2.0.0", outcome="accepted", bytes=5000, recipients=1,
    recipients_refused=0, new_connection=True, retry=False, failover=False, final=True,
    maybe_duplicate=False, error="",
).row()  # fmt: skip


def test_without_a_window_every_write_is_in_the_file(tmp_path):
    journal = AttemptsJournal(tmp_path / "attempts.csv")
    journal.write([ROW])
    (row,) = read_csv(tmp_path / "attempts.csv")
    assert tuple(row) == ATTEMPT_FIELDS
    assert row["msg_id"] == "run-1"
    journal.close()


def test_with_a_window_rows_wait_for_flush_and_close(tmp_path):
    path = tmp_path / "attempts.csv"
    journal = AttemptsJournal(path, flush_s=0.1)
    assert path.read_text() == ",".join(ATTEMPT_FIELDS) + "\n"  # the header at once
    journal.write([ROW])
    journal.write([ROW, ROW])
    assert read_csv(path) == []
    journal.flush()
    assert len(read_csv(path)) == 3
    journal.write([ROW])
    journal.close()
    journal.flush()  # after close: nothing to do, no error
    with pytest.raises(ValueError, match="closed"):
        journal.write([ROW])
    assert len(read_csv(path)) == 4
    assert journal.rows == 4
    assert path.read_text().endswith("\n")


def test_reopened_journal_appends_without_a_second_header(tmp_path):
    path = tmp_path / "attempts.csv"
    for _ in range(2):
        journal = AttemptsJournal(path, flush_s=0.1)
        journal.write([ROW])
        journal.close()
    assert len(read_csv(path)) == 2
