"""Sink throughput: Postfix's smtp-source against four receivers, one after another.

Run (from the repository root; needs Postfix's smtp-source and smtp-sink, never the daemon):

    .venv/bin/python benchmarks/sink_throughput.py [--messages 20000] [--rounds 3]

Each receiver gets `smtp-source -s 20 -d -l 5000 -m M` on 127.0.0.1 (20 parallel sessions,
messages of 5000 bytes, connections kept open between messages), timed by wall clock:

    a  Postfix's smtp-sink (C, no journal): the ceiling of this machine and client
    b  a bare aiosmtpd sink on uvloop whose handler answers "250 OK" (defined here)
    c  maildrill's sink (`python -m sinks`), journaling every message, one process
    d  maildrill's sink with `processes: 2` (SO_REUSEPORT workers)

maildrill's journals must hold exactly M receipts, or the run fails loudly (exit 1).
Target: c/b >= 1.5, i.e. the full sink, journal and all, in one process, at least 1.5 times
a bare aiosmtpd sink. The last line printed is the ratios, for comparing run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SESSIONS = 20
LENGTH = 5000


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        sys.exit(f"sink_throughput: {name} not found (install Postfix's tools: postfix package)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"sink_throughput: server exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    sys.exit(f"sink_throughput: nothing listens on {HOST}:{port} after {timeout}s")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the server we started (by its PID) and wait for it; SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def started(cmd: list[str], stdout: int = subprocess.DEVNULL) -> Iterator[Any]:
    """A server process, stopped on the way out; its stderr is shown only if it failed."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, text=True, cwd=ROOT)
        try:
            yield proc
        finally:
            stop(proc)
            if proc.returncode not in (0, -signal.SIGTERM):
                err.seek(0)
                print(f"{cmd[0]} exited with {proc.returncode}:\n{err.read()}", file=sys.stderr)


def read_json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The server's next stdout line, as JSON (its ready line)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        sys.exit(f"sink_throughput: no ready line from {proc.args!r}")
    return dict(json.loads(line))


def send(port: int, messages: int) -> float:
    """Wall-clock seconds for smtp-source to deliver `messages` to port."""
    cmd = [
        tool("smtp-source"),
        *("-s", str(SESSIONS), "-d", "-l", str(LENGTH), "-m", str(messages)),
        f"{HOST}:{port}",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"sink_throughput: smtp-source failed ({done.returncode}): {done.stderr}")
    return seconds


def receipts(directory: Path) -> int:
    rows = 0
    for path in sorted(directory.glob("receipts-*.csv")):
        with path.open(newline="") as f:
            rows += sum(1 for _ in csv.DictReader(f))
    return rows


# -- the receivers ---------------------------------------------------------------------


def run_postfix_sink(messages: int) -> float:
    port = free_port()
    cmd = [tool("smtp-sink"), "-u", "nobody", "-c", f"{HOST}:{port}", "1000"]
    with started(cmd) as proc:
        wait_listening(port, proc)
        return send(port, messages)


def run_bare_aiosmtpd(messages: int) -> float:
    cmd = [sys.executable, __file__, "--serve-bare"]
    with started(cmd, stdout=subprocess.PIPE) as proc:
        port = int(read_json_line(proc)["port"])
        seconds = send(port, messages)
        stop(proc)
        assert proc.stdout is not None
        final = json.loads(proc.stdout.readline() or "{}")
    if final.get("messages") != messages:
        fail(f"bare aiosmtpd counted {final.get('messages')} messages, expected {messages}")
    return seconds


def run_maildrill(messages: int, processes: int) -> float:
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as tmp:
        config = Path(tmp) / "sinks.yaml"
        config.write_text(
            json.dumps({"sinks": [{"name": "bench", "port": 0, "processes": processes}]})
        )
        out = Path(tmp) / "journals"
        cmd = [sys.executable, "-m", "sinks", str(config), "--out", str(out)]
        with started(cmd, stdout=subprocess.PIPE) as proc:
            (sink,) = read_json_line(proc)["sinks"]
            seconds = send(int(sink["port"]), messages)
            stop(proc)
            if proc.returncode != 0:
                fail(f"maildrill sink exited with {proc.returncode}")
        rows = receipts(out)
        if rows != messages:
            fail(f"maildrill (processes={processes}) journaled {rows} receipts, sent {messages}")
    return seconds


def fail(message: str) -> None:
    print(f"\n*** BENCHMARK INVALID: {message} ***\n", file=sys.stderr, flush=True)
    sys.exit(1)


# -- the bare aiosmtpd server (runs in its own process) ---------------------------------


class BareHandler:
    """What aiosmtpd's docs show as the smallest sink: take the message, say 250."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"


async def serve_bare() -> None:
    from aiosmtpd.smtp import SMTP

    handler = BareHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), HOST, 0, backlog=1024)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await done.wait()
    server.close()
    print(json.dumps({"messages": handler.messages}), flush=True)


# -- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-m", "--messages", type=int, default=20000, help="messages per receiver (default 20000)"
    )
    parser.add_argument(
        "-r",
        "--rounds",
        type=int,
        default=1,
        help="run every receiver this many times, interleaved, and keep each one's best",
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvloop

        uvloop.run(serve_bare())
        return 0
    m = args.messages
    print(
        f"smtp-source -s {SESSIONS} -d -l {LENGTH} -m {m}, {HOST}, one receiver at a time"
        + (f", best of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    best: dict[str, float] = {}
    receivers: tuple[tuple[str, str, Callable[[], float]], ...] = (
        ("a", "postfix smtp-sink", lambda: run_postfix_sink(m)),
        ("b", "bare aiosmtpd (uvloop)", lambda: run_bare_aiosmtpd(m)),
        ("c", "maildrill sink, 1 process", lambda: run_maildrill(m, 1)),
        ("d", "maildrill sink, processes: 2", lambda: run_maildrill(m, 2)),
    )
    for _ in range(args.rounds):
        for key, _label, run in receivers:
            seconds = run()
            best[key] = min(seconds, best.get(key, seconds))
    for key, label, _run in receivers:
        print(f"{key}  {label:<30} {best[key]:7.2f} s  {m / best[key]:9.0f} msgs/s")
    a, b, c, d = (m / best[k] for k in "abcd")
    print(f"ratio c/b={c / b:.2f} c/a={c / a:.2f} d/b={d / b:.2f} d/c={d / c:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
