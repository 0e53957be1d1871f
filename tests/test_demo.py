"""The README's demo command, end to end, in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import read_csv


@pytest.mark.slow
def test_demo_fails_over_and_counts_match(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "demo", "--messages", "12", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "primary down" in done.stdout
    assert "primary back" in done.stdout
    primary = read_csv(tmp_path / "receipts-primary.csv")
    secondary = read_csv(tmp_path / "receipts-secondary.csv")
    # 12 messages: 4 before the outage and 4 after on the primary, 4 during it on the secondary.
    assert len(primary) == 8
    assert len(secondary) == 4
    faults = read_csv(tmp_path / "faults-primary.csv")
    assert [(f["kind"], f["state"]) for f in faults if f["origin"] == "command"] == [
        ("down", "start"),
        ("down", "stop"),
    ]
