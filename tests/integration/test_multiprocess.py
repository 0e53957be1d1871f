"""`processes: 2`: two worker processes on one port, one control API, one ready line.

Each test runs `python -m sinks` as a user would, in its own process, on port 0.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    REPO,
    RawClient,
    Scrape,
    child_pids,
    connect_refused,
    control,
    message,
    none_answers,
    read_csv,
)

pytestmark = pytest.mark.slow

ROOT = REPO


class MultiSink:
    """A `python -m sinks` process and what its ready line said."""

    def __init__(self, tmp_path: Path, sink: dict[str, Any]) -> None:
        config = tmp_path / "sinks.yaml"
        config.write_text(json.dumps({"sinks": [sink]}))
        self.journal_dir = tmp_path / "journals"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sinks", str(config), "--out", str(self.journal_dir)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        (ready,) = self.read_json(timeout=30)["sinks"]
        self.ready = ready
        self.port: int = ready["port"]
        self.final: dict[str, Any] | None = None
        self.worker_pids: set[int] = set()

    def read_json(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout), "no line from the sink in time"
        line = self.proc.stdout.readline()
        assert line, f"the sink exited with {self.proc.poll()}"
        return dict(json.loads(line))

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.ready['control_port']}{path}"
        return control(url, self.ready["control_token"], method, body, timeout=10)

    def send(self, msg_ids: list[str]) -> None:
        """One connection per message, as a sender that does not reuse sessions."""
        for msg_id in msg_ids:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.sendmail("a@example.com", [f"{msg_id}@example.com"], message(msg_id))

    def stop(self) -> dict[str, Any]:
        """SIGTERM to the parent only; returns its final line."""
        if self.final is None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.final = self.read_json(timeout=30)
            assert self.proc.wait(30) == 0
        assert self.final is not None
        return self.final

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def receipts(self) -> list[dict[str, str]]:
        return [row for p in sorted(self.journal_dir.glob("receipts-*.csv")) for row in read_csv(p)]


@pytest.fixture
def multi_sink(tmp_path: Path) -> Iterator[Callable[..., MultiSink]]:
    started: list[MultiSink] = []

    def start(**sink: Any) -> MultiSink:
        running = MultiSink(tmp_path, {"name": "mx", "processes": 2, **sink})
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill()


def workers_of(sink: MultiSink) -> list[int]:
    """PIDs of this sink's live worker processes: its children while it runs, and (once
    it has gone and they were reparented) whichever of those PIDs still lives."""
    if sink.proc.poll() is None:
        sink.worker_pids |= set(child_pids(sink.proc.pid))
    return sorted(pid for pid in sink.worker_pids if alive(pid))


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_share_the_port_and_journal_every_message(
    multi_sink: Callable[..., MultiSink],
) -> None:
    sink = multi_sink()
    assert sink.ready["name"] == "mx"
    assert sink.ready["processes"] == 2
    assert len(workers_of(sink)) == 2
    sent = [f"m{i}" for i in range(60)]
    sink.send(sent)

    code, status = sink.control("GET", "/status")
    assert code == 200
    assert status["port"] == sink.port
    assert status["counters"]["accepted"] == 60
    assert status["counters"]["sessions"] == 60
    per_worker = [w["counters"]["accepted"] for w in status["workers"]]
    assert len(per_worker) == 2
    assert sum(per_worker) == 60
    assert min(per_worker) > 0, "the kernel spread 60 connections over both workers"
    # /metrics shows the workers' sum (the receipts rows are recounted below, once stopped).
    page = Scrape.of(f"http://127.0.0.1:{sink.ready['control_port']}/metrics")
    assert page.by("maildrill_sink_receipts_total", "sink", "outcome") == {
        ("mx", "accepted"): 60,
        ("mx", "dropped"): 0,
    }
    assert page.value("maildrill_sink_sessions_total", sink="mx") == 60

    final = sink.stop()
    (stopped,) = final["stopped"]
    assert stopped["counters"]["accepted"] == 60
    assert stopped["counters"]["active_sessions"] == 0
    assert workers_of(sink) == []
    assert connect_refused(sink.port)
    rows = sink.receipts()
    assert sorted(r["msg_id"] for r in rows) == sorted(sent)
    assert {r["worker"] for r in rows} == {"0", "1"}
    assert {p.name for p in sink.journal_dir.glob("receipts-*.csv")} == {
        "receipts-mx.csv",
        "receipts-mx-w1.csv",
    }


def test_down_refuses_the_whole_port_until_cleared(multi_sink: Callable[..., MultiSink]) -> None:
    sink = multi_sink()
    sink.send(["before"])
    code, fault = sink.control("POST", "/faults", {"kind": "down"})
    assert code == 201
    assert fault["id"] == "down-1"
    assert all(connect_refused(sink.port) for _ in range(20))
    assert sink.control("GET", "/health")[1]["listening"] is False
    code, cleared = sink.control("DELETE", "/faults")
    assert code == 200
    assert [f["id"] for f in cleared] == ["down-1"]
    assert sink.control("GET", "/health")[1]["listening"] is True
    after = [f"after{i}" for i in range(20)]
    sink.send(after)
    assert sink.control("GET", "/status")[1]["counters"]["accepted"] == 21
    sink.stop()
    assert sorted(r["msg_id"] for r in sink.receipts()) == sorted(["before", *after])
    for name in ("faults-mx.csv", "faults-mx-w1.csv"):
        states = [(r["kind"], r["state"]) for r in read_csv(sink.journal_dir / name)]
        assert states == [("down", "start"), ("down", "stop")]


def test_scheduled_fault_applies_in_every_worker(multi_sink: Callable[..., MultiSink]) -> None:
    reject = {"kind": "reject", "stage": "mail", "code": 550, "enhanced": "5.7.1", "at": 0}
    sink = multi_sink(faults=[reject])
    for i in range(30):
        with (
            smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client,
            pytest.raises(smtplib.SMTPSenderRefused) as refusal,
        ):
            client.sendmail("a@example.com", ["b@example.com"], message(f"r{i}"))
        assert refusal.value.smtp_code == 550
    status = sink.control("GET", "/status")[1]
    assert status["counters"]["rejected"] == 30
    assert all(w["counters"]["rejected"] > 0 for w in status["workers"])
    assert [a["kind"] for a in status["active"]] == ["reject"]
    sink.stop()
    assert sink.receipts() == []


def test_hang_freezes_open_sessions_in_every_worker(multi_sink: Callable[..., MultiSink]) -> None:
    """Each worker holds its own sessions; a hang sent to the sink reaches them all."""
    sink = multi_sink()
    clients: list[RawClient] = []
    workers: set[bytes] = set()
    try:
        while len(workers) < 2 and len(clients) < 40:  # the kernel picks the worker
            client = RawClient(sink.port, timeout=10)
            clients.append(client)
            assert client.open_data() == 354
            client.send(message(f"before{len(clients)}").encode() + b"\r\n.\r\n")
            code, text = client.reply() or (0, b"")
            assert code == 250
            queue_id = text.rsplit(b" ", 1)[1]  # SESSION.N: mx.3.1 (worker 0), mx.w1.3.1
            workers.add(queue_id.rsplit(b".", 2)[0])
        assert len(workers) == 2
        assert sink.control("POST", "/faults", {"kind": "hang"})[0] == 201
        for client in clients:
            client.send(b"MAIL FROM:<a@example.com>\r\n")
        assert none_answers(*clients)
        assert sink.control("DELETE", "/faults")[0] == 200
        assert all(client.reply() == (250, b"2.1.0 Ok") for client in clients)
    finally:
        for client in clients:
            client.close()


def test_bad_requests_are_answered_once_not_per_worker(
    multi_sink: Callable[..., MultiSink],
) -> None:
    sink = multi_sink()
    code, body = sink.control("POST", "/faults", {"kind": "nonsense"})
    assert code == 400
    assert "unknown kind" in body["error"]
    assert sink.control("DELETE", "/faults/down-9")[0] == 404
    assert sink.control("GET", "/faults") == (200, [])


def test_a_dead_worker_stops_the_sink_with_an_error(multi_sink: Callable[..., MultiSink]) -> None:
    sink = multi_sink()
    (victim, *_) = workers_of(sink)
    os.kill(victim, signal.SIGKILL)
    final = sink.read_json(timeout=30)
    assert "worker" in final["errors"][0]
    assert sink.proc.wait(30) == 1
    deadline = time.monotonic() + 10
    while workers_of(sink) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers_of(sink) == []
