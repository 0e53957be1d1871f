"""Small helpers shared by tests."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loadtest.postfix import postfix_binary
from loadtest.scenario import ScenarioError, parse_scenario
from maildrill.journal import uncell
from sinks.control_client import ControlClient

# How late a loaded machine may run what is due now: a timer on an event loop whose thread
# shares two busy cores with other processes (and, in tests, a GIL with the test's own
# thread). Tolerances for *when* something happens use it, never for *whether*; something
# early is still an error.
LATE_S = 0.25

# The checkout: tests live one or two folders below it, so paths start here.
REPO = Path(__file__).resolve().parent.parent

# The default drill cut to 8 s of load, for end-to-end tests.
SHORT_DEFAULT = [
    "--set", "campaign.schedule.0.duration_s=1",
    "--set", "campaign.schedule.1.duration_s=4",
    "--set", "campaign.schedule.2.duration_s=1",
    "--set", "faults.0.at=2",
    "--set", "faults.0.duration=1.5",
    "--set", "campaign.drain_s=3",
]  # fmt: skip


def message(msg_id: str, body: str = "Hello.\r\n", extra: str = "") -> str:
    return (
        f"From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: test {msg_id}\r\n"
        f"Message-ID: <{msg_id}@maildrill.test>\r\nX-Maildrill-Id: {msg_id}\r\n{extra}\r\n{body}"
    )


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` laid over it, nested mappings merged key by key (a scenario
    fragment over a whole scenario)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def scenario_refused(data: dict[str, Any], *words: str) -> str:
    """The one-line error a scenario is refused with; it names each of `words`."""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "s.yaml")
    text = str(caught.value)
    assert "\n" not in text
    for word in words:
        assert word in text, text
    return text


def read_csv(path: Path) -> list[dict[str, str]]:
    """A journal's rows with their values as sent (`maildrill.journal.uncell`)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: uncell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0, step: float = 0.005) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def connect_refused(port: int) -> bool:
    """True when a TCP connect to 127.0.0.1:`port` is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def control(
    url: str, token: str, method: str, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """A sink's control API call to `url` (base and path): (HTTP status, JSON body),
    errors included, through the one client (`sinks.control_client`)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    client = ControlClient(f"{parts.scheme}://{parts.netloc}", token, timeout=timeout)
    reply = client.exchange(method, path or "/", body)
    return reply.status, reply.json()


# A reply line (RFC 5321 4.2): code, then '-' (more lines follow) or ' ' and text, which is
# printable ASCII or tabs; the last line may be the bare code.
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])([\t\x20-\x7e]*))?")
_ENHANCED = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3} ")


class BadReply(Exception):
    pass


class RawClient:
    """SMTP spoken by hand over a socket, for input smtplib would never send.

    `strict` (the fuzz): every reply line is held to RFC 5321 and refusals to carry a
    matching enhanced code, raising BadReply; otherwise replies are read leniently.
    """

    def __init__(
        self, port: int, timeout: float = 2.0, source: str = "127.0.0.1", strict: bool = False
    ) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.strict = strict
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if not self.strict:
            return line.rstrip(b"\r")
        if not line.endswith(b"\r"):
            raise BadReply(f"reply line not ended by CRLF: {line[:80]!r}")
        return line[:-1]

    def reply(self) -> tuple[int, bytes] | None:
        """The next reply as (code, text of its last line); None when the server closed.

        Raises TimeoutError when the server says nothing for the socket's timeout.
        """
        if not self.strict:
            while True:
                line = self._line()
                if line is None:
                    return None
                if line[3:4] != b"-":
                    return int(line[:3]), line[4:]
        code = None
        while True:
            line = self._line()
            if line is None:
                if code is not None:
                    raise BadReply(f"closed in the middle of a {code} reply")
                return None
            match = _REPLY_LINE.fullmatch(line)
            if match is None:
                raise BadReply(f"malformed reply line: {line[:120]!r}")
            if code is not None and int(match[1]) != code:
                raise BadReply(f"multi-line reply changes code: {line[:80]!r}")
            code = int(match[1])
            if match[2] != b"-":
                text = match[3] or b""
                if code >= 400:
                    enhanced = _ENHANCED.match(text)
                    if enhanced is None or enhanced[1] != match[1][:1]:
                        raise BadReply(f"refusal without a matching enhanced code: {line!r}")
                return code, text

    def command(self, line: bytes) -> tuple[int, bytes] | None:
        self.send(line + b"\r\n")
        return self.reply()

    def open_data(
        self,
        sender: bytes = b"a@example.com",
        rcpt: bytes = b"b@example.com",
        helo: bytes = b"c.test",
    ) -> int:
        """Greeting, EHLO, MAIL and RCPT read leniently, then DATA: its code (354 when the
        server now takes the message; 0 when it closed)."""
        self.reply()
        self.command(b"EHLO " + helo)
        self.command(b"MAIL FROM:<" + sender + b">")
        self.command(b"RCPT TO:<" + rcpt + b">")
        reply = self.command(b"DATA")
        return reply[0] if reply else 0

    def closed_by_server(self) -> bool:
        """True when the server closes the connection (EOF or reset) before the timeout."""
        try:
            return self._line() is None
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# A reply on loopback takes milliseconds: none this long after a command means none is
# coming (for a test that something is *not* answered, never of when something is).
SILENT_S = 4 * LATE_S


def none_answers(*clients: RawClient) -> bool:
    """True when none of `clients` gets a byte within SILENT_S (all waited on at once)."""
    readable, _, _ = select.select([c.sock for c in clients], [], [], SILENT_S)
    return readable == [] and all(c.buffer == b"" for c in clients)


def assert_delays(reported: dict, first: dict[str, float], accepted: dict[str, float]) -> None:
    """A report's delay percentiles (ms) against delays recounted from raw journals: per
    message, `first` (say a receipt) minus `accepted` (the client's 250). HDR buckets:
    within 1 %, or 10 microseconds."""
    delays_ms = sorted(max(0.0, first[m] - accepted[m]) * 1000 for m in first)
    assert reported["max"] == pytest.approx(delays_ms[-1], rel=0.01, abs=0.01)
    median = delays_ms[max(0, math.ceil(len(delays_ms) / 2) - 1)]
    assert reported["p50"] == pytest.approx(median, rel=0.01, abs=0.01)


def parent_pid(pid: int) -> int:
    """The kernel's parent of `pid` (/proc/PID/stat), -1 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (the kernel's word, not a guess from argv)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid
    ]


def postfix_run_dir(prefix: str) -> Iterator[Path]:
    """A run directory Postfix can reach (it runs as its own user), removed afterwards; for
    a fixture to `yield from`. Postfix instances start as root: without it, a failure."""
    if os.geteuid() != 0:
        pytest.fail("Postfix instances start as root: run the suite as root (CI does)")
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o755)
    yield base / "run"
    shutil.rmtree(base, ignore_errors=True)


def postfix_running(run_dir: Path) -> list[str]:
    """The run's instances whose master daemon still runs, as `postfix status` says (the
    daemons' command lines do not name the run directory, so `ps` cannot tell)."""
    return [
        config.parent.name
        for config in sorted(run_dir.glob("postfix-*/etc"))
        if subprocess.run([postfix_binary(), "-c", str(config), "status"],
                          capture_output=True, timeout=30).returncode == 0
    ]  # fmt: skip


def drive(driver: Any, sender: Any, limit_s: float = 20.0) -> None:
    """Run a loadtest.driver.Driver's steps until its schedule is done (at most `limit_s`),
    as a Locust user would, then close the sender."""
    deadline = time.time() + limit_s
    try:
        while time.time() < deadline:
            step = driver.step(sender)
            if step.record is None and step.wait is None:
                break
            if step.wait:
                time.sleep(min(step.wait, 0.05))
    finally:
        sender.close()


@contextlib.contextmanager
def busy_core(seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """A child process spinning on one core for at most `seconds` (its own bound, should
    the caller's end never come); killed by its PID on the way out."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


class SinksCommand:
    """A `maildrill sinks SCENARIO --out OUT` this test started, and its ready line."""

    def __init__(self, proc: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready

    def stop(self) -> str:
        """SIGTERM by its PID, as a user's Ctrl-C or service stop; its stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return err


@contextlib.contextmanager
def maildrill_sinks(
    scenario: Path, out: Path, *args: str, prefix: Sequence[str] = ()
) -> Iterator[SinksCommand]:
    """`maildrill sinks` on `scenario` (with `args`, run under `prefix`, e.g. `ip netns
    exec NAME`, which execs it: the PID stays ours) until the block calls `stop()`; killed by
    its PID on the way out if the block did not get that far."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "loadtest.cli", "sinks", str(scenario), "--out",
         str(out), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield SinksCommand(proc, json.loads(proc.stdout.readline()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


class Scrape:
    """One `/metrics` page, parsed by prometheus_client's own parser (never by regexes)."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.families = list(text_string_to_metric_families(text))
        self.samples = [s for f in self.families for s in f.samples]

    @classmethod
    def of(cls, url: str, timeout: float = 5.0) -> Scrape:
        """GET `url` with no token (a scraper has none)."""
        import urllib.request

        with urllib.request.urlopen(url, timeout=timeout) as response:
            return cls(response.read().decode())

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """The samples named `name` summed by the values of the labels `keys`."""
        out: dict[tuple[str, ...], float] = {}
        for s in self.samples:
            if s.name == name:
                key = tuple(s.labels.get(k, "") for k in keys)
                out[key] = out.get(key, 0.0) + s.value
        return out

    def names(self) -> set[str]:
        """Every sample name on the page (`x_total`, `x_bucket`, ... as exposed)."""
        return {s.name for s in self.samples}


def lines_of(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The run's stderr, line by line, read in a thread (the pipe never fills) that ends
    when the run does."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def stop_reading(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    """The end of `lines_of`: the run killed if it is still going, its reader joined, its
    stderr closed (an open pipe is a ResourceWarning, an error in this suite)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    reader.join(10)
    assert proc.stderr is not None
    proc.stderr.close()


def port_free_on(*hosts: str) -> int:
    """A port free on every one of `hosts` (loopback addresses), for servers at several
    addresses on one port (a name whose A record moves, the port staying)."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket()) for _ in hosts]
            socks[0].bind((hosts[0], 0))
            port: int = socks[0].getsockname()[1]
            try:
                for sock, host in zip(socks[1:], hosts[1:], strict=True):
                    sock.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no port free on all of {', '.join(hosts)}")


@contextlib.contextmanager
def dns_child(
    zones: dict[str, Any], out: Path, token: str
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    """The run's DNS server as a drill runs it (`python -m maildrill.dns`), serving `zones`
    written to OUT/zones and journaling to OUT, its control token from the environment:
    its ready line's `dns` and the child, terminated (by its PID) on the way out."""
    from maildrill.dns.files import write_zones
    from maildrill.dns.zone import parse_zones

    paths = write_zones(parse_zones(zones), out / "zones")
    child = subprocess.Popen(
        [sys.executable, "-m", "maildrill.dns", *map(str, paths), "--journal-dir", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "MAILDRILL_CONTROL_TOKEN": token},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        yield json.loads(child.stdout.readline())["dns"], child
    finally:
        child.terminate()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
