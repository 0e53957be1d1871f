"""A backup MX keeps every message it acknowledged across SIGTERM, kill -9 and restarts.

The backup runs as a real `python -m sinks` process on a journal directory that outlives
it; its upstream is a sink in this process, held `down` (or `hang`ing) until the test lets
it answer. What counts is what the upstream journaled: every message the backup said 250
to arrives there, and every 250 named a queue id no other message had.
"""

from __future__ import annotations

import json
import select
import signal
import smtplib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, message, read_csv, wait_until

pytestmark = pytest.mark.slow

ROOT = REPO
QUEUED = "2.0.0 Ok: queued as "


class Backup:
    """One `python -m sinks` process serving a backup-mx sink named `backup`."""

    def __init__(self, tmp_path: Path, journal_dir: Path, upstream_port: int, **extra: Any):
        sink = {
            "name": "backup",
            "mode": "backup-mx",
            "upstream": {"port": upstream_port, "timeout_s": 1},
            "forward_backoff_s": 0.1,
            "forward_max_backoff_s": 0.3,
            **extra,
        }
        config = tmp_path / f"backup-{id(self)}.yaml"
        config.write_text(json.dumps({"sinks": [sink]}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sinks", str(config), "--out", str(journal_dir),
             "--loop", "asyncio"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.ready: dict[str, Any] = {}

    def wait_ready(self) -> Backup:
        line = self.line()
        assert line, f"the backup exited with {self.proc.wait(10)}: {self.stderr()}"
        (self.ready,) = json.loads(line)["sinks"]
        return self

    def line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert readable, "no line from the backup in time"
        return self.proc.stdout.readline()

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def send(self, msg_id: str) -> str:
        """Deliver one message on its own connection; returns the queue id of the 250."""
        with smtplib.SMTP("127.0.0.1", self.ready["port"], timeout=10) as client:
            client.ehlo()
            client.mail("news@example.com")
            client.rcpt("a@gmail.test")
            code, text = client.data(message(msg_id))
        reply = text.decode()
        assert code == 250, reply
        assert reply.startswith(QUEUED), reply
        return reply.removeprefix(QUEUED)

    def status(self) -> dict[str, Any]:
        from tests.helpers import control

        url = f"http://127.0.0.1:{self.ready['control_port']}/status"
        return dict(control(url, self.ready["control_token"], "GET", timeout=10)[1])

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.stderr()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def backups(tmp_path: Path) -> Iterator[Callable[..., Backup]]:
    """Start backup processes; each one still running at the end is killed by its pid."""
    started: list[Backup] = []

    def start(upstream_port: int, *, ready: bool = True, **extra: Any) -> Backup:
        backup = Backup(tmp_path, tmp_path / "j", upstream_port, **extra)
        started.append(backup)
        return backup.wait_ready() if ready else backup

    yield start
    for backup in started:
        backup.close()


def upstream(start_sinks: Any, tmp_path: Path, fault: str = "down") -> tuple[Any, Any]:
    """A plain sink for the backup to forward to, `fault` in force until the test clears it."""
    primary = start_sinks({"sinks": [{"name": "primary"}]}, journal_dir=tmp_path / "up")
    status, body = primary.control("primary", "POST", "/faults", {"kind": fault})
    assert status == 201, body
    return primary, body["id"]


def arrived(tmp_path: Path) -> Counter[str]:
    """msg_id -> how many times the upstream journaled it."""
    return Counter(r["msg_id"] for r in read_csv(tmp_path / "up" / "receipts-primary.csv"))


def relay_rows(tmp_path: Path) -> list[dict[str, str]]:
    return [row for p in sorted((tmp_path / "j").glob("relay-*.csv")) for row in read_csv(p)]


def assert_journals_name_the_replies(tmp_path: Path, ids: dict[str, str]) -> None:
    """The queue id of each 250 is the one in the receipts and in the relay journal."""
    receipts = [r for p in (tmp_path / "j").glob("receipts-*.csv") for r in read_csv(p)]
    assert {r["msg_id"]: r["queue_id"] for r in receipts} == ids
    relay = relay_rows(tmp_path)
    for event in ("queued", "forwarded"):
        assert {r["msg_id"]: r["queue_id"] for r in relay if r["event"] == event} == ids


def test_restart_after_sigterm_keeps_and_forwards_both_messages(start_sinks, tmp_path, backups):
    primary, fault = upstream(start_sinks, tmp_path)
    first = backups(primary.port("primary"))
    queue_a = first.send("A")
    first.terminate()  # A is queued, the upstream still down
    second = backups(primary.port("primary"))
    queue_b = second.send("B")
    assert queue_a != queue_b, "a restarted backup reused a queue id"
    assert second.status()["relay"]["depth"] == 2
    primary.control("primary", "DELETE", f"/faults/{fault}")  # the upstream appears
    assert wait_until(lambda: arrived(tmp_path) == {"A": 1, "B": 1}, timeout=15), arrived(tmp_path)
    assert wait_until(lambda: second.status()["relay"]["depth"] == 0, timeout=10)
    assert_journals_name_the_replies(tmp_path, {"A": queue_a, "B": queue_b})


def test_kill_9_loses_nothing_acknowledged_even_mid_forward(start_sinks, tmp_path, backups):
    # The upstream accepts TCP and never greets: the backup's forwards are in flight (each
    # for up to timeout_s) when it is killed.
    primary, fault = upstream(start_sinks, tmp_path, fault="hang")
    first = backups(primary.port("primary"))
    sent = {f"A{i}": first.send(f"A{i}") for i in range(3)}
    assert wait_until(lambda: first.status()["relay"]["in_flight"] > 0, timeout=10)
    first.kill()
    second = backups(primary.port("primary"))
    sent["B"] = second.send("B")
    assert len(set(sent.values())) == len(sent), f"queue ids reused: {sent}"
    primary.control("primary", "DELETE", f"/faults/{fault}")
    want = set(sent)
    # At least once: a forward cut by the kill after the upstream's 250 may come again.
    assert wait_until(lambda: set(arrived(tmp_path)) == want, timeout=20), arrived(tmp_path)
    assert wait_until(lambda: second.status()["relay"]["depth"] == 0, timeout=10)


def test_queue_ids_unique_across_workers_and_restarts(start_sinks, tmp_path, backups):
    """`processes: 2`, then a restart with `processes: 1`: worker 1's queue is taken over."""
    primary, fault = upstream(start_sinks, tmp_path)
    port = primary.port("primary")
    first = backups(port, processes=2)
    sent: dict[str, str] = {}

    def workers() -> set[str]:
        return {r["worker"] for p in (tmp_path / "j").glob("receipts-*.csv") for r in read_csv(p)}

    for i in range(40):  # the kernel spreads connections over the workers by hash
        sent[f"W{i}"] = first.send(f"W{i}")
        if i >= 3 and workers() == {"0", "1"}:
            break
    assert workers() == {"0", "1"}
    first.terminate()
    second = backups(port)  # one process now: worker 1's queue has no worker of its own
    for i in range(3):
        sent[f"R{i}"] = second.send(f"R{i}")
    assert len(set(sent.values())) == len(sent), f"queue ids reused: {sent}"
    primary.control("primary", "DELETE", f"/faults/{fault}")
    want = Counter(dict.fromkeys(sent, 1))
    assert wait_until(lambda: arrived(tmp_path) == want, timeout=20), arrived(tmp_path)
    assert wait_until(lambda: second.status()["relay"]["depth"] == 0, timeout=10)


def test_a_second_process_cannot_share_a_live_queue(start_sinks, tmp_path, backups):
    """Two processes forwarding one queue would send each message twice; the second is
    refused at start, in one line, and the first keeps serving."""
    primary, _fault = upstream(start_sinks, tmp_path)
    first = backups(primary.port("primary"))
    second = backups(primary.port("primary"), ready=False)
    assert second.proc.wait(30) == 2
    error = second.stderr()
    assert "queue-backup.sqlite: in use by another process" in error, error
    assert len(error.strip().splitlines()) == 1, error
    assert first.send("C").startswith("backup.")
