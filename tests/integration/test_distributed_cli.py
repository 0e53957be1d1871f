"""`maildrill worker` as a real process: every wait bounded (no master at the address, a
port that is no Locust master), one line on stderr and exit 2, no traceback; and a worker
refuses a plan from a master that is not maildrill's when its targets are outside loopback
without allow_remote. (The flags' bad input: tests/unit/test_distributed_cli.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

FOREIGN_MASTER = Path(__file__).with_name("foreign_master.py")


def maildrill(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """A port that takes TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_a_worker_gives_up_when_nothing_listens_at_the_master_address(closed_port):
    started = time.monotonic()
    done = maildrill("worker", "--master", f"127.0.0.1:{closed_port}", "--wait", "1")
    took = time.monotonic() - started
    assert_one_line(done, f"no master answers at 127.0.0.1:{closed_port} within 1 s")
    assert 1.0 <= took < 15  # it waited for a master starting late, then gave up


def test_a_worker_gives_up_on_a_port_that_is_no_locust_master(mute_listener):
    """The TCP connection is made, Locust's handshake never answered: held to --wait, not
    Locust's five minutes."""
    started = time.monotonic()
    done = maildrill("worker", "--master", f"127.0.0.1:{mute_listener}", "--wait", "2")
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"maildrill: the Locust master at 127.0.0.1:{mute_listener} did not answer within 2 s"
    )
    assert took < 30


def refusal_from_a_foreign_master(port: int, plan: str) -> str:
    """Run a worker (no --yes, no --allow-secrets) against foreign_master.py sending `plan`:
    it must exit 2 with one refusal line, which is returned."""
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(FOREIGN_MASTER), "--master", "--headless",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
         "--expect-workers", "1", "--expect-workers-max-wait", "30", "-u", "1", "-r", "1",
         "--run-time", "30s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "FOREIGN_PLAN": plan},
    )  # fmt: skip
    try:
        done = maildrill("worker", "--master", f"127.0.0.1:{port}", "--wait", "20")
    finally:
        master.terminate()
        try:
            master.wait(15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(5)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (refusal,) = [line for line in done.stderr.splitlines() if "refused the master's plan" in line]
    return refusal


def test_a_worker_refuses_a_plan_with_targets_outside_loopback(closed_port):
    """A master that is not maildrill's sends a scenario whose servers are outside loopback
    without allow_remote: the worker checks it as its own, refuses, and exits 2."""
    refusal = refusal_from_a_foreign_master(closed_port, "remote")
    assert "outside loopback" in refusal
    assert "allow_remote: true" in refusal


def test_a_worker_without_yes_refuses_remote_targets_the_master_allows(closed_port):
    """allow_remote: true comes from the master's own plan: not enough without --yes."""
    refusal = refusal_from_a_foreign_master(closed_port, "allowed")
    assert "targets outside loopback" in refusal
    assert "start the worker with --yes" in refusal


def test_a_worker_without_allow_secrets_reads_no_password_for_the_master(closed_port):
    """A plan whose server reads its AUTH password from a file of the worker's host."""
    refusal = refusal_from_a_foreign_master(closed_port, "secret")
    assert "password_file" in refusal
    assert "--allow-secrets" in refusal
