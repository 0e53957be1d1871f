"""Real Locust processes against real sinks: the attempts journal matches the receipts."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.helpers import LATE_S, REPO, read_csv, wait_until

pytestmark = pytest.mark.slow

LOCUSTFILE = str(REPO / "loadtest" / "locustfile.py")


def scenario_file(tmp_path: Path, sinks, rate: float, duration: float, **extra) -> Path:
    data = {
        "name": "t",
        "servers": [
            {"name": "primary", "port": sinks.port("primary"), "priority": 10},
            {"name": "secondary", "port": sinks.port("secondary"), "priority": 20},
        ],
        "routing": {"circuit": {"threshold": 2, "cooldown_s": 0.5}},
        "campaign": {
            "seed": 3,
            "schedule": [{"duration_s": duration, "rate": rate}],
            "drain_s": 3,
            "streams": [{"size_median": 3000, "size_sigma": 0.3}],
        },
        "users": 8,
        **extra,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def locust(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_one_to_one(journal_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Every accepted attempt has exactly one receipt on its server, and nothing else does."""
    attempts = read_csv(journal_dir / "attempts.csv")
    receipts = read_csv(journal_dir / "receipts-primary.csv") + read_csv(
        journal_dir / "receipts-secondary.csv"
    )
    accepted = Counter((a["msg_id"], a["server"]) for a in attempts if a["outcome"] == "accepted")
    received = Counter((r["msg_id"], r["sink"]) for r in receipts)
    assert accepted == received
    assert max(accepted.values()) == 1
    return attempts, receipts


def test_headless_run_fails_over_and_back(start_sinks, tmp_path):
    run = tmp_path / "run"
    sinks = start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]}, journal_dir=run)
    path = scenario_file(tmp_path, sinks, rate=40, duration=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary",
         "--scenario", str(path), "--journal-dir", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The primary goes down once mail flows to it, however long Locust took to start.
        receipts = run / "receipts-primary.csv"
        flowing = wait_until(
            lambda: receipts.exists() and len(read_csv(receipts)) >= 10, 60, step=0.05
        )
        if flowing:
            fault = {"kind": "down", "duration": 1.5}
            assert sinks.control("primary", "POST", "/faults", fault)[0] == 201
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert flowing, stderr
    assert "Traceback" not in stderr, stderr
    attempts, _ = check_one_to_one(tmp_path / "run")
    final = {a["msg_id"]: a for a in attempts if a["final"] == "1"}
    assert len(final) == 200  # 40/s for 5 s, every message finished
    assert all(a["outcome"] == "accepted" for a in final.values())
    down = read_csv(tmp_path / "run" / "faults-primary.csv")
    onset, cleared = (float(f["time"]) for f in down if f["kind"] == "down")
    on_secondary = [float(a["end"]) for a in attempts if a["server"] == "secondary"]
    back_on_primary = [
        float(a["end"])
        for a in attempts
        if a["server"] == "primary" and a["outcome"] == "accepted" and float(a["start"]) > cleared
    ]
    assert on_secondary, "no failover"
    assert min(on_secondary) >= onset
    assert back_on_primary, "no failback"
    # Failback comes within a cool-down and a probe of the primary's return.
    assert min(back_on_primary) - cleared < 1.5
    # Open model: lateness is recorded, and stays small when nothing stalls for long.
    lateness = sorted(float(a["start"]) - float(a["intended"]) for a in attempts)
    assert lateness[0] >= -0.01
    assert lateness[len(lateness) // 2] < LATE_S


@pytest.mark.parametrize("mode", ["master-worker", "processes"])
def test_distributed_run_journals_every_attempt_once(start_sinks, tmp_path, mode):
    out = tmp_path / "run"
    sinks = start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]}, journal_dir=out)
    path = scenario_file(tmp_path, sinks, rate=60, duration=3)
    port = str(free_port())
    common = ["--scenario", str(path), "--journal-dir", str(out), "--master-bind-port", port]
    if mode == "processes":
        # Forked workers dial --master-port: it must match the bind port.
        done = locust(*common, "--processes", "2", "--master-port", port)
    else:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker",
                 "--master-port", port],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]  # fmt: skip
        try:
            done = locust(*common, "--master", "--expect-workers", "2")
        finally:
            for w in workers:
                w.wait(20)
    assert "Traceback" not in done.stderr, done.stderr
    attempts, receipts = check_one_to_one(out)
    assert len(receipts) == 180
    assert sorted(int(a["msg_id"].rsplit("-", 1)[1]) for a in attempts) == list(range(180))
    by_worker = Counter(a["worker"] for a in attempts)
    assert len(by_worker) == 2
    assert sorted(by_worker.values()) == [90, 90]
