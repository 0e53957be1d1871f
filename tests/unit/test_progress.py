"""The progress line's counts, recounted from the attempts journal's rows."""

from __future__ import annotations

import dataclasses
import time

from loadtest.progress import Progress
from loadtest.suppression import SUPPRESSED
from maildrill.journal import CsvJournal
from maildrill.records import AttemptRecord
from tests.unit.test_records import SAMPLES


def test_the_progress_line_counts_the_journal_s_lines(tmp_path):
    """Finished messages, attempts (a message not sent is none) and accepted per server in
    the last second, recounted from the rows written; a bad line is skipped, not counted."""
    path = tmp_path / "attempts.csv"
    now = time.time()
    (first, _), (second, _) = SAMPLES["attempts"][:2]
    rows = [
        dataclasses.replace(first, end=now, server="primary"),  # accepted, final
        dataclasses.replace(first, end=now, server="secondary", final=False),
        dataclasses.replace(second, end=now),  # refused, not final
        dataclasses.replace(second, outcome=SUPPRESSED, server="", final=True),
        dataclasses.replace(first, end=now - 5, server="primary"),  # accepted, long ago
    ]
    journal = CsvJournal(path, AttemptRecord)
    for row in rows:
        journal.write(row)
    journal.close()
    with path.open("a", encoding="utf-8") as f:
        f.write(first_line_with(final="x") + "\n")
    progress = Progress(path)
    progress.poll()
    assert (progress.finished, progress.attempts) == (3, 4)
    assert progress.rates() == {"primary": 1, "secondary": 1}
    assert progress.tail.skipped == 1


def first_line_with(**cells: str) -> str:
    """The first sample attempt's line with some cells changed."""
    values = dict(zip(AttemptRecord.header(), SAMPLES["attempts"][0][1].split(","), strict=True))
    values.update(cells)
    return ",".join(values.values())
