"""Driver throughput: how many messages a second maildrill's Locust user can send.

Run (from the repository root; needs Postfix's smtp-source and smtp-sink, never the daemon):

    .venv/bin/python benchmarks/driver_throughput.py [--messages 20000] [--seconds 5] [--rounds 3]

One Postfix smtp-sink (C, throws mail away) on a free 127.0.0.1 port receives everything,
from 20 concurrent sessions of 5000-byte messages, connections reused:

    a   smtp-source -s 20 -d -l 5000 -m M: the ceiling of this machine and receiver
    b   a bare Locust user (benchmarks/bare_locustfile.py): one smtplib connection per
        user, one sendmail per task, 20 users sending for S seconds, one process
    c   maildrill's CampaignSender (loadtest/locustfile.py), 20 users, a generated scenario:
        one server behind failover routing, ~5000-byte campaign messages, attempts journal
        on; the open-model schedule offers M messages within 1 s (far above capacity), so
        the users send flat out until all M are accepted
    b2  b with --processes 2
    c2  c with --processes 2

msgs/s: (a) M over smtp-source's wall clock; (b) messages counted by the users over first
start to last end; (c) accepted rows of attempts.csv over first start to last end. Every
count must equal smtp-sink's own (its -c counters) or the run fails loudly (exit 1).
Target: c/b >= 0.85. The last line printed is the ratios, for comparing run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
USERS = 20
LENGTH = 5000
LOCUST_TIMEOUT_S = 180  # hard bound on any one Locust run
DRAIN_S = 60  # (c): the campaign's time bound for sending its M messages
_MESG = re.compile(rb"mesg=(\d+)")


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        sys.exit(f"driver_throughput: {name} not found (install Postfix's tools: postfix package)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def fail(message: str) -> None:
    print(f"\n*** BENCHMARK INVALID: {message} ***\n", file=sys.stderr, flush=True)
    sys.exit(1)


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Signal a process we started (by its PID) and wait for it; SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PostfixSink:
    """One smtp-sink for the whole run; its -c counters, written to a file, count receipts."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.counters = directory / "smtp-sink.out"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        cmd = [tool("smtp-sink"), *user, "-c", f"{HOST}:{self.port}", "1000"]
        with self.counters.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"smtp-sink exited early with {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            time.sleep(0.05)
        fail(f"smtp-sink does not listen on {HOST}:{self.port}")

    def received(self) -> int:
        """Messages smtp-sink has taken so far (its counters line is rewritten after each)."""
        with self.counters.open("rb") as f:
            f.seek(max(0, self.counters.stat().st_size - 200))  # the file grows ~25 B/message
            found = _MESG.findall(f.read())
        return int(found[-1]) if found else 0

    def settled(self, expected: int, timeout: float = 3.0) -> int:
        """The count once it reaches `expected` or stops moving (it is written after the reply)."""
        deadline = time.monotonic() + timeout
        seen = self.received()
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = self.received()
        return seen

    def close(self) -> None:
        stop(self.proc)


def run_locust(args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Headless Locust, bounded by LOCUST_TIMEOUT_S; a failed or crashed run fails loudly."""
    cmd = [sys.executable, "-m", "locust", "--headless", "--only-summary", *args]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            proc.wait(timeout=LOCUST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop(proc, signal.SIGINT)
            fail(f"Locust ran past {LOCUST_TIMEOUT_S} s: {' '.join(cmd)}\n{log.read_text()}")
        finally:
            stop(proc)
    text = log.read_text()
    if proc.returncode != 0 or "Traceback" in text:
        fail(f"Locust exited with {proc.returncode}: {' '.join(cmd)}\n{text[-4000:]}")


def distributed(processes: int) -> list[str]:
    if processes == 1:
        return []
    port = str(free_port())  # forked workers dial --master-port: it must match the bind port
    return ["--processes", str(processes), "--master-bind-port", port, "--master-port", port]


# -- the senders: each returns (messages, seconds) ----------------------------------------


def run_source(sink: PostfixSink, messages: int) -> tuple[int, float]:
    before = sink.received()
    cmd = [
        tool("smtp-source"),
        *("-s", str(USERS), "-d", "-l", str(LENGTH), "-m", str(messages)),
        f"{HOST}:{sink.port}",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        fail(f"smtp-source failed ({done.returncode}): {done.stderr}")
    received = sink.settled(before + messages) - before
    if received != messages:
        fail(f"(a) smtp-source sent {messages}, smtp-sink counted {received}")
    return messages, seconds


def run_bare(sink: PostfixSink, seconds: int, processes: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as name:
        tmp = Path(name)
        before = sink.received()
        run_locust(
            [
                *("-f", str(ROOT / "benchmarks" / "bare_locustfile.py")),
                *("-H", f"smtp://{HOST}:{sink.port}"),
                # Users send for `seconds` once all are up, then idle until the run ends.
                *("-u", str(USERS), "-r", str(USERS), "-t", f"{seconds + 3}s"),
                *("--stop-timeout", "10", "--json-file", str(tmp / "stats")),
                *distributed(processes),
            ],
            tmp / "locust.log",
            env={**os.environ, "BARE_OUT": str(tmp), "BARE_SECONDS": str(seconds)},
        )
        tallies = [json.loads(p.read_text()) for p in tmp.glob("bare-*.json")]
        if len(tallies) != processes:
            fail(f"(b) {len(tallies)} tallies from {processes} Locust processes")
        count = sum(t["count"] for t in tallies)
        failures = sum(t["failures"] for t in tallies)
        # Locust's final stats (its --csv files are only rewritten once a second).
        stats = json.loads((tmp / "stats.json").read_text())
        requests = sum(e["num_requests"] for e in stats)
        failed = sum(e["num_failures"] for e in stats)
        received = sink.settled(before + count) - before
        if failures or failed:
            fail(f"(b) {failures} failed sends ({failed} in Locust's stats)")
        if not count == requests == received:
            fail(f"(b) users counted {count}, Locust's stats {requests}, smtp-sink {received}")
        span = max(t["last_end"] for t in tallies) - min(t["first_start"] for t in tallies)
        return count, span


def scenario(port: int, messages: int) -> dict[str, Any]:
    return {
        "name": "driver-bench",
        "servers": [{"name": "primary", "host": HOST, "port": port, "priority": 10}],
        "routing": {"policy": "failover", "servers": ["primary"]},
        "campaign": {
            "seed": 1,
            "streams": [{"name": "promotional", "size_median": LENGTH, "size_sigma": 0}],
            # All M due within 1 s: far above what 20 users can send, so this is capacity.
            "schedule": [{"duration_s": 1, "messages": messages}],
            "drain_s": DRAIN_S,
        },
        "users": USERS,
    }


def run_maildrill(sink: PostfixSink, messages: int, processes: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as name:
        tmp = Path(name)
        path = tmp / "scenario.yaml"
        path.write_text(json.dumps(scenario(sink.port, messages)))  # JSON is YAML
        journals = tmp / "run"
        before = sink.received()
        run_locust(
            [
                *("-f", str(ROOT / "loadtest" / "locustfile.py")),
                *("--scenario", str(path), "--journal-dir", str(journals)),
                *("--stop-timeout", "10"),
                *distributed(processes),
            ],
            tmp / "locust.log",
        )
        with (journals / "attempts.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        accepted = outcomes.get("accepted", 0)
        received = sink.settled(before + accepted) - before
        if accepted != messages or len(rows) != messages:
            fail(
                f"(c) attempts.csv has {outcomes}; expected {messages} accepted (drain too short?)"
            )
        if received != accepted:
            fail(f"(c) attempts.csv has {accepted} accepted, smtp-sink counted {received}")
        if {r["bytes"] for r in rows} != {str(LENGTH)}:
            fail(f"(c) message sizes {sorted({r['bytes'] for r in rows})}, expected {LENGTH}")
        span = max(float(r["end"]) for r in rows) - min(float(r["start"]) for r in rows)
        return accepted, span


# -- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-m", "--messages", type=int, default=20000, help="messages for (a) and (c), default 20000"
    )
    parser.add_argument(
        "-s", "--seconds", type=int, default=5, help="sending time of (b), default 5"
    )
    parser.add_argument(
        "-r",
        "--rounds",
        type=int,
        default=1,
        help="run every sender this many times, interleaved, and keep each one's best",
    )
    args = parser.parse_args()
    m = args.messages
    best: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as name:
        sink = PostfixSink(Path(name))
        try:
            print(
                f"smtp-sink on {HOST}:{sink.port}; {USERS} sessions of {LENGTH}-byte messages"
                + (f", best of {args.rounds} rounds" if args.rounds > 1 else "")
            )
            senders: tuple[tuple[str, str, Callable[[], tuple[int, float]]], ...] = (
                ("a", f"smtp-source -s {USERS} -d -l {LENGTH} -m {m}", lambda: run_source(sink, m)),
                ("b", "bare Locust + smtplib, 1 process", lambda: run_bare(sink, args.seconds, 1)),
                ("c", "maildrill user, 1 process", lambda: run_maildrill(sink, m, 1)),
                ("b2", "bare Locust, --processes 2", lambda: run_bare(sink, args.seconds, 2)),
                ("c2", "maildrill user, --processes 2", lambda: run_maildrill(sink, m, 2)),
            )
            for round_ in range(1, args.rounds + 1):
                line = []
                for key, _label, run in senders:
                    n, seconds = run()
                    line.append(f"{key} {n / seconds:.0f}")
                    if key not in best or n / seconds > best[key][0] / best[key][1]:
                        best[key] = (n, seconds)
                # Every round's figures, so the spread (other load on the machine) shows.
                print(f"round {round_}: " + ", ".join(line) + " msgs/s", flush=True)
        finally:
            sink.close()
    rate = {key: n / seconds for key, (n, seconds) in best.items()}
    for key, label, _run in senders:
        n, seconds = best[key]
        print(f"{key:<3} {label:<40} {n:7d} msgs {seconds:6.2f} s {rate[key]:9.0f} msgs/s")
    print(
        f"ratio c/b={rate['c'] / rate['b']:.2f} c/a={rate['c'] / rate['a']:.2f} "
        f"c2/b2={rate['c2'] / rate['b2']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
