"""`maildrill report` as a user runs it, a process of its own (cli.script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_analysis_unchanged import _benchmark

ATTEMPTS = 20_000
OUTPUTS = ("summary.json", "report.md", "report.html")


@pytest.fixture
def journals(tmp_path: Path) -> Path:
    _benchmark().synthesise(tmp_path, ATTEMPTS)
    return tmp_path


def _report(run_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "report", *options, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # buffered, as a user's shell has it (a pipe): unflushed lines would be lost
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )


def test_maildrill_report_exits_at_once_with_everything_printed_and_written(
    journals: Path,
) -> None:
    """`maildrill report` ends with os._exit (cli.EXIT_AT_ONCE): what it printed is
    flushed first, its exit code is main's, and every report is on disk."""
    done = _report(journals)
    assert done.returncode == 1, done.stderr  # the synthetic run fails its SLOs
    accepted = ATTEMPTS * 49 // 50
    lines = done.stdout.split("\n")
    assert lines[0] == ""
    assert lines[1].startswith(f"messages: planned {ATTEMPTS * 49 // 50}, accepted {accepted},")
    assert lines[-2].startswith("SLOs FAILED. Report:"), lines  # the last line, whole
    for name in OUTPUTS:
        assert (journals / name).stat().st_size > 0, name
    printed = json.loads(_report(journals, "--json").stdout)
    assert printed == json.loads((journals / "summary.json").read_text())
    assert printed["messages"]["accepted"] == accepted
