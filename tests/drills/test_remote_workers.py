"""`maildrill run --master-bind` with `maildrill worker`s on loopback: what needs no
network namespaces (those: test_distributed.py). A worker killed mid-run is named lost and
what it shipped is kept; workers that never come end the run in one line within the wait."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.drills.run_helpers import descendants_alive
from tests.helpers import SHORT_DEFAULT, parent_pid

pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _maildrill(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loadtest.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)


def test_workers_that_never_come_end_the_run_in_one_line_within_the_wait(tmp_path):
    run_dir = tmp_path / "run"
    port = _free_port()
    started = time.monotonic()
    master = _maildrill("run", "default", "--out", str(run_dir), *SHORT_DEFAULT,
                        "--master-bind", f"127.0.0.1:{port}", "--expect-workers", "1",
                        "--workers-wait", "2")  # fmt: skip
    try:
        out, err = master.communicate(timeout=60)
    finally:
        _stop([master])
    assert master.returncode == 2, out + err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"maildrill: the Locust worker did not connect to 127.0.0.1:{port} within 2 s; "
        f"start each with `maildrill worker --master 127.0.0.1:{port}`"
    )
    assert time.monotonic() - started < 45
    assert descendants_alive(run_dir) == []


def test_a_worker_killed_mid_run_is_named_lost_and_what_it_shipped_is_kept(tmp_path):
    """Two `maildrill worker`s; one's Locust process is killed (SIGKILL: no last word) two
    seconds into the campaign. The master names it lost by its missing heartbeats, keeps
    the rows it shipped, and the survivor's share is whole."""
    run_dir = tmp_path / "run"
    port = _free_port()
    master = _maildrill("run", "default", "--out", str(run_dir), *SHORT_DEFAULT,
                        "--master-bind", f"127.0.0.1:{port}", "--expect-workers", "2",
                        "--workers-wait", "30")  # fmt: skip
    workers = [
        _maildrill("worker", "--master", f"127.0.0.1:{port}", "--wait", "30") for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = json.loads((run_dir / "run.json").read_text())["t0"]
        time.sleep(max(0.0, t0 + 2.0 - time.time()))
        (victim,) = [
            int(pid) for pid in os.listdir("/proc")
            if pid.isdigit() and parent_pid(int(pid)) == workers[0].pid
        ]  # fmt: skip
        os.kill(victim, signal.SIGKILL)
        out, err = master.communicate(timeout=90)
        survivor = workers[1].wait(30)
    finally:
        _stop([master, *workers])
    assert master.returncode in (0, 1), out + err
    assert survivor == 0
    harness = json.loads((run_dir / "harness.json").read_text())
    (lost,) = harness["workers_lost"]
    assert lost["why"] == "no heartbeat"
    assert f"Locust worker {lost['worker']} lost" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["harness"]["workers_lost"] == [lost]

    roll = json.loads((run_dir / "workers.json").read_text())["workers"]
    attempts = _rows(run_dir / "attempts.csv")
    per_worker = Counter(a["worker"] for a in attempts)
    assert set(per_worker) == set(roll)  # the lost worker's rows up to its death are here
    for worker, state in roll.items():
        assert state["rows"] == per_worker[worker] > 0
    (alive,) = set(roll) - {lost["worker"]}
    assert roll[alive]["shipped"] == roll[alive]["rows"]
    assert roll[lost["worker"]]["shipped"] is None  # it never flushed: killed
    mine = [a for a in attempts if a["worker"] == lost["worker"]]
    assert max(float(a["end"]) for a in mine) - t0 < lost["at_s"]
    # Its share after its death was never sent, and the summary says so.
    m = summary["messages"]
    assert m["not_sent"] > 0
    assert m["lost"] == 0
    assert summary["journal_problems"]["skipped_lines"] == {}


def test_a_worker_that_refuses_the_plan_stops_the_run_in_one_line(tmp_path):
    """A worker started without --allow-secrets refuses a plan whose server reads its AUTH
    password from the host: its share would go unsent, so the drill does not run as
    written. The master stops at once and says why in one line, exit 2 (it used to run
    the schedule out, send nothing and pass its SLOs)."""
    scenario = tmp_path / "secret.yaml"
    scenario.write_text(
        "name: secret\n"
        "servers:\n"
        "  - {name: primary, local: true, username: campaign, password_env: MD_TEST_PW,\n"
        "     sink: {auth: {required: true, credentials: {campaign: pw}}}}\n"
        "campaign: {schedule: [{duration_s: 30, rate: 5}], drain_s: 1}\n"
        "users: 2\n"
        "slo: ['lost == 0']\n"
    )
    run_dir = tmp_path / "run"
    port = _free_port()
    started = time.monotonic()
    bind = f"127.0.0.1:{port}"
    master = _maildrill("run", str(scenario), "--out", str(run_dir), "--master-bind", bind,
                        "--expect-workers", "1", "--workers-wait", "30")  # fmt: skip
    worker = _maildrill("worker", "--master", f"127.0.0.1:{port}", "--wait", "30")
    try:
        out, err = master.communicate(timeout=90)
        _, worker_err = worker.communicate(timeout=30)
    finally:
        _stop([master, worker])
    assert master.returncode == 2, out + err
    assert worker.returncode == 2, worker_err
    assert "Traceback" not in err + worker_err
    last = err.strip().splitlines()[-1]
    assert " refused the plan: primary read an AUTH password from this host (password_env " in last
    assert last.endswith(f": the drill did not run as written (journals kept in {run_dir})")
    assert time.monotonic() - started < 30  # stopped, not the schedule run out
    harness = json.loads((run_dir / "harness.json").read_text())
    assert (
        harness["aborted_by"]
        == last.removeprefix("maildrill: ").split(": the drill did not run")[0]
    )
    assert descendants_alive(run_dir) == []
