"""`maildrill sinks SCENARIO` plays the scenario's faults while another sender sends: a
bounded sender here (smtplib, a few dozen messages, the primary then the secondary when
refused), the process stopped by SIGINT to its PID. Checked against the journals and
what this test sent: the fault's start row at its planned time, the receipts exactly the
messages the sender saw accepted, harness.json in the shape `maildrill report` reads."""

from __future__ import annotations

import json
import os
import select
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.analysis.loaded import RunDir
from tests.helpers import LATE_S, REPO, message, read_csv

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONPATH=str(REPO))
FAULT_AT_S = 1.5
FAULT_S = 1.5
SCENARIO = f"""\
name: sinks-timeline
description: two sinks, the primary down for a while, for another sender
servers:
  - {{name: primary, priority: 10, local: true}}
  - {{name: secondary, priority: 20, local: true}}
campaign:
  streams: [{{name: promotional}}]
  schedule: [{{duration_s: 60, rate: 1}}]
faults:
  - {{at: {FAULT_AT_S}, target: primary, kind: down, duration: {FAULT_S}}}
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.cli", *args]


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def sinks(tmp_path: Path, scenario: Path) -> Iterator[subprocess.Popen[str]]:
    """`maildrill sinks` in a process of its own; killed by its PID if still running."""
    proc = subprocess.Popen(
        cli("sinks", str(scenario), "--out", str(tmp_path / "out")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def send(port: int, msg_id: str) -> bool:
    """One message on its own session; True when accepted, False when refused."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.sendmail("news@platform.test", ["rcpt@example.invalid"], message(msg_id))
    except (ConnectionRefusedError, smtplib.SMTPServerDisconnected):
        return False
    return True


def test_sinks_play_the_fault_while_another_sender_sends(tmp_path, sinks):
    out = tmp_path / "out"
    assert sinks.stdout is not None
    ready, _, _ = select.select([sinks.stdout], [], [], 30)
    assert ready, "no ready line from maildrill sinks"
    line = json.loads(sinks.stdout.readline())
    t0 = line["t0"]
    port = {s["name"]: s["port"] for s in line["sinks"]}
    assert (out / "scenario.yaml").exists()

    sent: dict[str, list[str]] = {"primary": [], "secondary": []}
    refused_at = []
    for n in range(40):  # a few dozen, across the fault; bounded in count and time
        msg_id = f"ext-{n}"
        if send(port["primary"], msg_id):
            sent["primary"].append(msg_id)
        else:
            refused_at.append(time.time())
            assert send(port["secondary"], msg_id), "the secondary takes what the primary refused"
            sent["secondary"].append(msg_id)
        if time.time() > t0 + FAULT_AT_S + FAULT_S + 1:
            break
        time.sleep(0.1)
    os.kill(sinks.pid, signal.SIGINT)
    _, err = sinks.communicate(timeout=30)
    assert sinks.returncode == 0, err
    assert "fault timeline starts" in err
    assert str(out) in err

    planned = t0 + FAULT_AT_S
    rows = read_csv(out / "faults-primary.csv")
    (start,) = [float(r["time"]) for r in rows if r["state"] == "start"]
    (stop,) = [float(r["time"]) for r in rows if r["state"] == "stop"]
    assert planned - 0.001 <= start < planned + LATE_S, start - planned
    assert planned + FAULT_S - 0.001 <= stop < planned + FAULT_S + LATE_S
    assert refused_at, "the sender met the fault"
    assert all(start <= t <= stop for t in refused_at), "refused in the fault"
    assert sent["secondary"], "the sender failed over during the fault"
    for name, ids in sent.items():
        receipts = read_csv(out / f"receipts-{name}.csv")
        assert sorted(r["msg_id"] for r in receipts) == sorted(ids), name

    harness = json.loads((out / "harness.json").read_text())
    assert (harness["sender"], harness["t0"], harness["partial"]) == ("external", t0, False)
    assert (harness["stopped_by"], harness["interrupted_by"]) == ("SIGINT", None)
    (fault,) = harness["faults"]
    assert (fault["at_s"], fault["target"], fault["kind"]) == (FAULT_AT_S, "primary", "down")
    assert fault["status"].startswith("started ")
    assert fault["started_at"] == pytest.approx(start, abs=1e-6)
    assert harness["journals"]["receipts-primary.csv"]["lines"] == len(sent["primary"]) + 1
    # What `maildrill report` reads of it: another sender's run, from t0, whole.
    run = RunDir.load(out)
    assert (run.has_sender_journal, run.t0, run.partial) == (False, t0, False)
    assert run.scenario is not None
    assert run.scenario.name == "sinks-timeline"


def test_start_at_in_the_past_or_too_far_ahead_is_refused_in_one_line(scenario):
    for when in (str(time.time() - 60), "2001-01-01T00:00:00+00:00", str(time.time() + 3e5),
                 "next tuesday"):  # fmt: skip
        done = subprocess.run(cli("sinks", str(scenario), "--start-at", when),
                              capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "--start-at" in done.stderr
        assert done.stdout == "", "no sink started"
