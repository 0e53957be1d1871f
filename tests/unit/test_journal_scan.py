"""The fast reader's checks made a few megabytes at a time (journal_scan) give the answers
the whole file gives, whatever the chunk boundaries cut: a mark of two bytes or a UTF-8
character across two chunks, a torn last line longer than a chunk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadtest.analysis import journal_scan, journals
from maildrill.journal import ESCAPE
from tests.helpers import REPO

SAMPLES = {
    "clean": b"a,b,c\n1,x,y\n2,z,w\n",
    "torn": b"a,b,c\n1,x,y\n2,z,w,more,commas,than,a,chunk",
    "escaped after a comma": b"a,b,c\n1,'=x,y\n",
    "escaped first in a line": b"a,b\n'x,1\n",
    "quote": b'a,b\n"x",1\n',
    "nul": b"a,b\nx\x00,1\n",
    "utf8": "a,b\nh\u00e9llo,\u20ac\U0001f600\n".encode(),
    "bad utf8": b"a,b\nh\xc3llo,1\n",
    "utf8 cut at the end": "a,b\nx,\u20ac".encode()[:-1],
    "no newline": b"a,b,c",
}


def whole(data: bytes) -> journal_scan.Scan:
    """The same questions asked of the whole file at once."""
    last = data.rfind(b"\n")
    try:
        data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    mark = ESCAPE.encode()
    return journal_scan.Scan(
        size=len(data),
        newlines=data.count(b"\n"),
        last_newline=last,
        commas=data.count(b",", 0, last + 1),
        quote_or_nul=b'"' in data or b"\x00" in data,
        utf8=utf8,
        escaped_cell=b"," + mark in data or b"\n" + mark in data,
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 22])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_scan_in_chunks_answers_as_the_whole_file(
    name: str, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.csv"
    path.write_bytes(SAMPLES[name])
    monkeypatch.setattr(journal_scan, "CHUNK", chunk)
    assert journal_scan.scan(path) == whole(SAMPLES[name])


def test_the_columns_a_run_directory_leaves_out_are_read_nowhere() -> None:
    """journals.UNUSED: no required column, and no source under loadtest/analysis names one
    (as "name" or 'name'), but the list itself."""
    sources = {
        p: p.read_text(encoding="utf-8")
        for p in (REPO / "loadtest" / "analysis").glob("*.py")
        if p.name != "journals.py"
    }
    for kind, columns in journals.UNUSED.items():
        for column in columns:
            assert column not in journals.REQUIRED[kind]
            named = re.compile(rf"[\"']{column}[\"']|\.{column}\b")
            assert not [p.name for p, text in sources.items() if named.search(text)], column
