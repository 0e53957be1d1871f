"""No secret reaches a command line, a log, the ready line or the output directory.

Each test starts real processes (`maildrill sinks`, `python -m sinks`) with inline AUTH
passwords and STARTTLS, proves the secrets reached the servers (a login with them works),
then reads every child's /proc/PID/cmdline and environ, everything the processes printed,
and every file they left behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, child_pids, message

pytestmark = pytest.mark.slow

PASSWORD = "pw-S3CRET-d41c9e"
PRIVATE_KEY = b"PRIVATE KEY"


def process_text(pid: int) -> bytes:
    """Everything `ps e` could show of a process: its argv and its environment."""
    proc = Path(f"/proc/{pid}")
    return (proc / "cmdline").read_bytes() + b"\0" + (proc / "environ").read_bytes()


def files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line in time"
    return proc.stdout.readline()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end is killed, by its own pid."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def login_and_send(port: int, password: str, msg_id: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the sink's own self-signed certificate
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        client.login("alice", password)
        client.sendmail("a@example.com", ["b@example.test"], message(msg_id))


def test_maildrill_sinks_with_two_processes_keeps_passwords_and_keys_private(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """`processes: 2` and inline credentials: each worker gets its config, the password
    and the self-signed key work, and neither shows in a process's argv or environment,
    on stdout or stderr, or in any file of the output directory."""
    scenario = {
        "name": "secrets",
        "servers": [
            {
                "name": "mx",
                "local": True,
                "sink": {
                    "processes": 2,
                    "starttls": True,
                    "auth": {"required": True, "credentials": {"alice": PASSWORD}},
                },
            }
        ],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "sinks", str(path), "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started.append(proc)
    ready_line = read_line(proc)
    (ready,) = json.loads(ready_line)["sinks"]

    workers = child_pids(proc.pid)
    assert len(workers) == 2, "one process per worker"
    for pid in [proc.pid, *workers]:
        assert PASSWORD.encode() not in process_text(pid), f"pid {pid} shows the password"
    for i in range(6):  # the kernel spreads connections; each worker knows the password
        login_and_send(ready["port"], PASSWORD, f"m{i}")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        login_and_send(ready["port"], "wrong", "refused")

    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    printed = ready_line + stdout + stderr
    assert PASSWORD not in printed
    assert "PRIVATE KEY" not in printed
    assert files_holding(out, PASSWORD.encode()) == []
    assert files_holding(out, PRIVATE_KEY) == [], "a generated TLS key stays out of the run"
    assert list(out.glob("tls/*.crt")), "the certificate, public, is kept for clients to trust"
    assert len(list(out.glob("receipts-mx*.csv"))) == 2


def test_a_worker_spec_that_cannot_be_read_names_no_secret(tmp_path: Path) -> None:
    """A worker given a broken spec says so in one line; it never echoes what it read."""
    spec = json.dumps({"sink": {"name": "mx", "auth": {"credentials": {"a": PASSWORD}}}})
    done = subprocess.run(
        [sys.executable, "-m", "sinks.worker"],
        cwd=REPO, input=spec + "\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert PASSWORD not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_python_m_sinks_environment_holds_only_the_control_token(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """The documented exception: a worker's environment carries the run's control token
    (so it can check requests), and that is all maildrill adds to it."""
    config = tmp_path / "sinks.yaml"
    config.write_text(
        json.dumps({"sinks": [{"name": "mx", "processes": 2,
                               "auth": {"credentials": {"alice": PASSWORD}}}]})
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sinks", str(config), "--out", str(tmp_path / "j")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    started.append(proc)
    (ready,) = json.loads(read_line(proc))["sinks"]
    deadline = time.monotonic() + 10
    while len(child_pids(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in child_pids(proc.pid):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        added = {e.partition(b"=")[0] for e in environ if e.startswith(b"MAILDRILL_")}
        assert added == {b"MAILDRILL_CONTROL_TOKEN"}
        assert f"MAILDRILL_CONTROL_TOKEN={ready['control_token']}".encode() in environ
        assert PASSWORD.encode() not in b"\0".join(environ)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
