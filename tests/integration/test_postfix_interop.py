"""Postfix's own load generator against our sink: a real MTA-side client, counted twice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import read_csv

pytestmark = pytest.mark.postfix


def smtp_source() -> str:
    path = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(path).exists():
        pytest.fail("smtp-source not found: run `make tools` (Debian package postfix)")
    return path


@pytest.mark.parametrize("disconnect", [False, True], ids=["reuse", "per-message"])
def test_smtp_source_messages_all_journaled(start_sinks, disconnect):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    count = 300
    args = [smtp_source(), "-s", "5", "-m", str(count), "-l", "3000"]
    if not disconnect:
        args.append("-d")  # smtp-source: -d means "don't disconnect", reuse the session
    args.append(f"127.0.0.1:{sinks.port('primary')}")
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert len(rows) == count
    assert sinks.sink("primary").counters.accepted == count
    assert all(r["outcome"] == "accepted" for r in rows)
    sessions = {r["session"] for r in rows}
    assert len(sessions) == (count if disconnect else 5)


def test_smtp_source_meets_the_throttle_reply(start_sinks):
    """Past the bucket's burst, the sink defers with Postfix's own reply text."""
    sinks = start_sinks(
        {
            "sinks": [
                {
                    "name": "primary",
                    "behaviours": [{"kind": "throttle", "rate": 1, "burst": 50, "per": "sink"}],
                }
            ]
        }
    )
    done = subprocess.run(
        [smtp_source(), "-s", "4", "-m", "120", f"127.0.0.1:{sinks.port('primary')}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # smtp-source gives up at the first refusal, as its man page says.
    assert done.returncode != 0
    assert "450 4.7.1 Error: too much mail from 127.0.0.1" in done.stderr
    receipts = read_csv(sinks.journal_dir / "receipts-primary.csv")
    refusals = read_csv(sinks.journal_dir / "refusals-primary.csv")
    # The burst of 50 tokens (plus at most one refilled); up to 3 other sessions had taken
    # a token at MAIL when smtp-source exited and cut them before their dot.
    assert 50 - 3 <= len(receipts) <= 51
    assert len(refusals) >= 1
    assert {(r["stage"], r["code"], r["enhanced"]) for r in refusals} == {("mail", "450", "4.7.1")}
    assert sinks.sink("primary").counters.deferred == len(refusals)
