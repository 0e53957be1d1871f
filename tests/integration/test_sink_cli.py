"""`python -m sinks CONFIG --out DIR` as a real process: ready line, exit codes, SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from maildrill.control_auth import auth_header
from tests.helpers import LATE_S, REPO, message, read_csv, wait_until

pytestmark = pytest.mark.slow


CONFIG = """\
sinks:
  - name: primary
    faults:
      - {kind: reject, stage: mail, code: 451, enhanced: 4.3.2, at: 0.8, duration: 30}
  - name: secondary
    behaviours:
      - {kind: recipient_cap, max: 1}
"""


def start(config: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "sinks", str(config), "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line from the sink process in time"
    return proc.stdout.readline()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end is killed, by its own pid."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_ready_line_serving_and_sigterm(tmp_path, processes, loop):
    config = tmp_path / "sinks.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "journals"
    zero = time.time()
    proc = start(config, out, "--loop", loop, "--start-at", str(zero))
    processes.append(proc)

    ready = json.loads(read_line(proc))
    ready_at = time.time()
    sinks = {s["name"]: s for s in ready["sinks"]}
    assert list(sinks) == ["primary", "secondary"]
    for s in sinks.values():
        assert s["host"] == "127.0.0.1"
        assert s["port"] > 0
        assert s["control_port"] > 0
        assert s["port"] != s["control_port"]
        url = f"http://127.0.0.1:{s['control_port']}/health"
        # The control API answers only to the run's token, which the ready line carries.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(url, headers=auth_header(s["control_token"]))
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["name"] == s["name"]

    with smtplib.SMTP("127.0.0.1", sinks["secondary"]["port"], timeout=5) as client:
        refused = client.sendmail("a@example.com", ["b@x.test", "c@x.test"], message("s1"))
        assert list(refused) == ["c@x.test"]
        client.sendmail("a@example.com", ["b@x.test"], message("s2"))
    # The scheduled fault starts at --start-at + 0.8 s, on the sink's clock.
    faults = out / "faults-primary.csv"
    assert wait_until(lambda: faults.exists() and len(read_csv(faults)) == 1, timeout=5)
    (row,) = read_csv(faults)
    if ready_at < zero + 0.7:
        assert 0.8 - 0.002 <= float(row["time"]) - zero < 0.8 + LATE_S
    else:  # a slow start (a loaded machine): a fault already due starts at once
        assert float(row["time"]) == pytest.approx(ready_at, abs=0.3)
    with smtplib.SMTP("127.0.0.1", sinks["primary"]["port"], timeout=5) as client:
        client.ehlo()
        assert client.mail("a@example.com")[0] == 451

    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    final = json.loads(stdout.strip().splitlines()[-1])
    counters = {s["name"]: s["counters"] for s in final["stopped"]}
    assert counters["secondary"]["accepted"] == 2
    assert counters["secondary"]["deferred"] == 1
    assert counters["primary"]["deferred"] == 1
    assert counters["primary"]["accepted"] == 0
    assert "secondary: sessions=1 accepted=2 " in stderr
    # Journals are complete on disk: every row ends with a newline, nothing is buffered.
    receipts = out / "receipts-secondary.csv"
    assert receipts.read_bytes().endswith(b"\n")
    assert [r["msg_id"] for r in read_csv(receipts)] == ["s1", "s2"]
    refusals = read_csv(out / "refusals-secondary.csv")
    assert [(r["code"], r["enhanced"]) for r in refusals] == [("452", "4.5.3")]
    # Nothing listens any more.
    for s in sinks.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", s["port"]), timeout=1).close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sinks:\n  - name: a\n    behaviours: [{kind: nope}]\n", "unknown kind 'nope'"),
        ("sinks:\n  - name: a\n  - name: a\n", "sink names must be unique"),
        ("sinks:\n  - name: a\n    host: 192.0.2.1\n", "allow_remote: true"),
        ("sinks:\n  - name: a\n    host: [\n", "not valid YAML"),
        ("sinks:\n\t- name: a\n", "not valid YAML"),
        (None, "cannot read"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, processes, text, expected):
    config = tmp_path / "sinks.yaml"
    if text is not None:
        config.write_text(text)
    proc = start(config, tmp_path / "journals")
    processes.append(proc)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"maildrill sink: {config}: ")
    assert expected in lines[0]


def test_port_in_use_exits_2(tmp_path, processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "sinks.yaml"
        config.write_text(f"sinks:\n  - name: a\n    port: {port}\n")
        proc = start(config, tmp_path / "journals")
        processes.append(proc)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith("maildrill sink: cannot listen: ")
    assert str(port) in line


def test_maildrill_sinks_starts_a_proxy_with_its_named_upstream(tmp_path, processes):
    """`maildrill sinks` gives the upstream a proxy names a real port before starting
    either, so mail through the proxy reaches the sink behind it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "sinks", "proxy-primary", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    processes.append(proc)
    sinks = {s["name"]: s for s in json.loads(read_line(proc, timeout=20))["sinks"]}
    with smtplib.SMTP("127.0.0.1", sinks["primary"]["port"], timeout=5) as client:
        assert client.ehlo()[1].startswith(b"mx1.maildrill.test")  # the upstream's name
        client.sendmail("a@example.com", ["b@x.test"], message("through-proxy"))
    assert wait_until(
        lambda: (
            [r["msg_id"] for r in read_csv(tmp_path / "receipts-primary-mta.csv")]
            == ["through-proxy"]
        )
    )
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
