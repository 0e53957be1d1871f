"""Real Postfix instances under test, built, faulted and torn down by `maildrill run`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postfix]


@pytest.fixture
def run_dir():
    """Postfix runs as its own user: the run directory must be reachable by it."""
    if os.geteuid() != 0:
        pytest.fail("Postfix instances start as root: run the suite as root (CI does)")
    base = Path(tempfile.mkdtemp(prefix="maildrill-postfix-", dir="/var/tmp"))
    base.chmod(0o755)
    yield base / "run"
    shutil.rmtree(base, ignore_errors=True)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def drill(run_dir: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def no_postfix_left(run_dir: Path) -> bool:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return str(run_dir) not in ps


def test_primary_stopped_mid_campaign_every_message_accounted(run_dir):
    done = drill(run_dir, "campaign.schedule.0.duration_s=10", "faults.0.at=3",
                 "faults.0.duration=3", "campaign.drain_s=8")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    attempts = rows(run_dir / "attempts.csv")
    downstream = Counter(r["msg_id"] for r in rows(run_dir / "receipts-downstream.csv"))
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    stuck = {
        r["msg_id"] for p in run_dir.glob("mta-queue-*.csv") for r in rows(p)
    }  # fmt: skip
    m = summary["messages"]
    # Independent recount: each accepted message is downstream once, or counted as
    # duplicated or stranded, and the summary's numbers are exactly these.
    assert m["accepted"] == len(accepted) == 300
    assert m["duplicates"] == sum(1 for n in downstream.values() if n > 1)
    assert m["stranded"] == len((accepted - set(downstream)) & stuck)
    assert m["lost"] == len(accepted - set(downstream) - stuck) == 0
    assert set(downstream) <= accepted
    # The MTAs added their Received: lines; the id survived the relay unchanged.
    assert all(n >= 1 for n in downstream.values())
    # Failover timing, recounted from the raw journals.
    (stop,) = [f for f in rows(run_dir / "faults-primary.csv") if f["state"] == "start"]
    onset = float(stop["time"])
    first_on_secondary = min(
        float(a["end"]) for a in attempts
        if a["server"] == "secondary" and a["outcome"] == "accepted" and float(a["end"]) >= onset
    )  # fmt: skip
    (failover,) = summary["failovers"]
    assert failover["kind"] == "mta-stop"
    assert failover["failover_s"] == pytest.approx(first_on_secondary - onset, abs=0.001)
    restart = [f for f in rows(run_dir / "faults-primary.csv") if f["state"] == "stop"]
    assert len(restart) == 1
    assert failover["failback_s"] is not None
    mta = summary["mta"]
    assert mta["primary"]["accepted"] + mta["secondary"]["accepted"] == 300
    assert mta["primary"]["delivered"] == mta["primary"]["accepted"]


def test_mail_stuck_in_stopped_mtas_is_stranded_not_lost(run_dir):
    """Downstream defers every session from its start (a steady behaviour, so no race with
    the first message): both MTAs accept and keep everything queued."""
    done = drill(
        run_dir, "campaign.schedule.0.duration_s=3", "campaign.drain_s=2", "faults=[]",
        "servers.2.sink.behaviours=[{kind: reject, stage: connect, code: 421, enhanced: 4.3.2}]",
        "slo=[lost == 0]",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    stuck = [r["msg_id"] for p in run_dir.glob("mta-queue-*.csv") for r in rows(p)]
    m = summary["messages"]
    assert m["accepted"] == 90
    assert m["received_unique"] == 0
    assert m["stranded"] == len(set(stuck)) == 90
    assert m["lost"] == 0
    assert summary["mta"]["primary"]["stranded"] == summary["mta"]["primary"]["accepted"]
