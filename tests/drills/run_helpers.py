"""What the `maildrill run` drill tests share: running it, and checking a run directory
against the sinks' own journals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.helpers import (
    SHORT_DEFAULT,
    parent_pid,
    read_csv,
)


def maildrill(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_run(run_dir: Path, *args: str, ready: str = "run.json") -> subprocess.Popen[str]:
    """The shortened default drill in the background, once `ready` is in its run dir."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         *SHORT_DEFAULT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.time() + 40
    while time.time() < deadline and not (run_dir / ready).exists():
        time.sleep(0.02)
    return proc


def receipts(run_dir: Path) -> list[dict[str, str]]:
    return [row for path in sorted(run_dir.glob("receipts*.csv")) for row in read_csv(path)]


def assert_summary_matches_sinks(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    attempts = read_csv(run_dir / "attempts.csv")
    received = Counter(r["msg_id"] for r in receipts(run_dir))
    accepted_ids = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    m = summary["messages"]
    assert m["received_unique"] == len(received)
    assert m["accepted"] == len(accepted_ids)
    assert m["lost"] == len(accepted_ids - set(received))
    assert m["duplicates"] == sum(1 for n in received.values() if n > 1)
    assert m["attempted"] == len({a["msg_id"] for a in attempts})
    per_server = summary["throughput"]["per_server"]
    for sink in ("primary", "secondary"):
        mine = [a["msg_id"] for a in attempts if a["server"] == sink and a["outcome"] == "accepted"]
        assert per_server.get(sink, {}).get("accepted", 0) == len(mine)
        # Each 250 has its receipt on that sink. A receipt may have no 250: the sender was
        # cut or stopped (SIGINT) before it read the reply; the attempts count, not the sink.
        kept = {(r["msg_id"], r["outcome"]) for r in receipts(run_dir) if r["sink"] == sink}
        assert {(msg_id, "accepted") for msg_id in mine} <= kept
    return summary


def assert_only_the_cut_sessions_failed(run_dir: Path, m: dict) -> None:
    """`down` cuts open sessions: a message caught mid-transaction may fail, nothing else."""
    assert m["accepted"] + m["failed"] == 250
    attempts = read_csv(run_dir / "attempts.csv")
    failed_finals = [a for a in attempts if a["final"] == "1" and a["outcome"] != "accepted"]
    assert len(failed_finals) == m["failed"] <= 3
    assert all(a["maybe_duplicate"] == "1" for a in failed_finals)


def descendants_alive(run_dir: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def descendant_cmdlines(root: int) -> list[str]:
    """The command lines of every process below `root` (by parent PID, not by argv)."""
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            parents[int(pid)] = parent_pid(int(pid))
    below, found = {root}, []
    while grown := {p for p, parent in parents.items() if parent in below} - below:
        below |= grown
    for pid in below - {root}:
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found
