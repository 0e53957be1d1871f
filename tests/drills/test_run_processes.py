"""`maildrill run` as processes: several Locust workers, a signal mid-run, a sink or worker
killed, and secrets that must stay out of every file, log and command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.cli import EXIT_PARTIAL
from tests.drills.run_helpers import (
    assert_only_the_cut_sessions_failed,
    assert_summary_matches_sinks,
    descendant_cmdlines,
    descendants_alive,
    maildrill,
    start_run,
)
from tests.helpers import (
    SHORT_DEFAULT,
    parent_pid,
    read_csv,
)

pytestmark = pytest.mark.slow


def test_distributed_drill_with_two_workers(tmp_path):
    run_dir = tmp_path / "run"
    done = maildrill("run", "default", "--out", str(run_dir), "--workers", "2", *SHORT_DEFAULT)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = assert_summary_matches_sinks(run_dir)
    assert_only_the_cut_sessions_failed(run_dir, summary["messages"])
    workers = {a["worker"] for a in read_csv(run_dir / "attempts.csv")}
    assert len(workers) == 2


def test_sigint_mid_run_leaves_journals_partial_summary_and_no_orphans(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PARTIAL, out + err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True
    assert "PARTIAL RUN (interrupted by SIGINT)" in out
    assert 0 < summary["messages"]["attempted"] < 250
    assert summary["messages"]["not_sent"] > 0
    assert_summary_matches_sinks(run_dir)
    time.sleep(0.5)
    assert descendants_alive(run_dir) == []


def test_a_sink_killed_mid_run_is_named_and_the_run_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--set", "faults=[]")
    time.sleep(3.0)
    (pid,) = [
        int(line.split(":")[0])
        for line in descendants_alive(run_dir)
        if " -m sinks " in line and "/primary.yaml " in line
    ]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), out + err
    assert "sink primary died" in err
    harness = json.loads((run_dir / "harness.json").read_text())
    (death,) = harness["sink_deaths"]
    assert death["sink"] == "primary"
    assert death["exit_code"] == -signal.SIGKILL
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["harness"]["sink_deaths"][0]["sink"] == "primary"
    # The secondary took over; the primary's journal up to the kill is whole: every 250
    # it gave has its receipt (nothing lost), and no line of it is torn.
    m = summary["messages"]
    assert_only_the_cut_sessions_failed(run_dir, m)
    assert m["lost"] == 0
    assert summary["journal_problems"]["skipped_lines"] == {}
    assert summary["throughput"]["per_server"]["secondary"]["accepted"] > 100


def test_a_locust_worker_killed_mid_run_is_reported_and_its_journal_kept(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--workers", "2", "--set", "faults=[]",
                     "--set", "campaign.schedule.1.duration_s=3")  # fmt: skip
    time.sleep(2.5)
    # The two workers of this run are children of its maildrill process.
    mine = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "--worker" in cmd and parent_pid(int(pid)) == proc.pid:
            mine.append(int(pid))
    assert len(mine) == 2
    os.kill(mine[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode in (0, 1), out + err
    assert "Locust worker" in err
    harness = json.loads((run_dir / "harness.json").read_text())
    assert len(harness["workers_lost"]) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["harness"]["workers_lost"]) == 1
    # What both workers journaled is whole and agrees with the sinks; the dead worker's
    # share after its death was never sent, and the summary says so.
    m = summary["messages"]
    assert m["lost"] == 0
    assert m["not_sent"] > 0
    assert summary["journal_problems"]["skipped_lines"] == {}
    attempts = read_csv(run_dir / "attempts.csv")
    assert len({a["worker"] for a in attempts}) == 2


@pytest.mark.parametrize("processes", [1, 2])
def test_auth_secrets_stay_out_of_run_files_logs_and_command_lines(tmp_path, processes):
    """A drill with AUTH over STARTTLS on both sides: the passwords reach the sink (its
    worker processes too) and the sender, and nowhere else (journals, reports, logs, the
    scenario as run, process list); the sink's generated TLS key stays out of the run."""
    import yaml

    secret_sink, secret_client = "s1nk-S3CRET-4f9a", "cl13nt-S3CRET-7b2c"
    creds = tmp_path / "sink-credentials"
    creds.write_text(f"campaign:{secret_client}\nops:{secret_sink}\n")
    scenario = {
        "name": "auth",
        "servers": [
            {
                "name": "primary",
                "local": True,
                "username": "campaign",
                "password_env": "MAILDRILL_TEST_PASSWORD",
                "starttls": True,
                "sink": {
                    "processes": processes,
                    "starttls": True,
                    "auth": {
                        "required": True,
                        "credentials_file": str(creds),
                        "credentials": {"inline": secret_sink},
                    },
                },
            }
        ],
        "campaign": {"schedule": [{"duration_s": 3, "rate": 20}], "drain_s": 2},
        "users": 4,
        # Locust workers too: the run's own read its password_env as its master would.
        "workers": processes,
        "slo": ["lost == 0", "failed == 0"],
    }
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    env = {**os.environ, "MAILDRILL_TEST_PASSWORD": secret_client}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen_in_cmdlines = []
    while proc.poll() is None:
        seen_in_cmdlines += [c for c in descendant_cmdlines(proc.pid) if "S3CRET" in c]
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert seen_in_cmdlines == []
    assert "S3CRET" not in out + err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["messages"]["accepted"] == 60  # AUTH worked: every message went in
    leaks = [
        str(f)
        for f in run_dir.rglob("*")
        if f.is_file() and (b"S3CRET" in f.read_bytes() or b"PRIVATE KEY" in f.read_bytes())
    ]
    assert leaks == []
    assert len(list(run_dir.glob("receipts-primary*.csv"))) == processes
    assert "<redacted>" in (run_dir / "scenario.yaml").read_text()
