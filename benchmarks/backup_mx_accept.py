"""Backup-MX accept rate: what the fsync before each 250 costs, measured in one run.

Run (from the repository root; needs Postfix's smtp-source, never the daemon):

    .venv/bin/python benchmarks/backup_mx_accept.py [--messages 5000] [--rounds 3]

Each receiver is `python -m sinks` on 127.0.0.1, one process, and gets
`smtp-source -s 20 -d -l 5000 -m M` (20 parallel sessions, 5000-byte messages, connections
kept open), timed by wall clock, one receiver at a time:

    a  a plain sink (`mode: sink`): journals each message, queues nothing (the baseline)
    b  a backup MX with `durability: process`: SQLite `synchronous=NORMAL`, the setting
       before durability was a choice; a message survives kill -9, not a power loss
    c  a backup MX with the default `durability: full`: `synchronous=FULL`, the queue's
       WAL fsynced before each 250; a message survives a power loss

The backups' upstream is a closed port on 127.0.0.1 (nothing forwarded: the queue only
grows, as in a primary's outage). Each run must end with M receipts and, for a backup,
M messages in its queue, or the benchmark fails loudly (exit 1). The last line printed
is the ratios (c/b: the durable default against the old setting), for comparing runs;
absolute rates depend on the disk (an fsync on a laptop SSD, a cloud volume and tmpfs
differ by orders of magnitude).
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink_throughput import HOST, LENGTH, SESSIONS, free_port, read_json_line, send, started

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str) -> None:
    print(f"\n*** BENCHMARK INVALID: {message} ***\n", file=sys.stderr, flush=True)
    sys.exit(1)


def count_rows(path: Path) -> int:
    with path.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def queued(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])


def run_sink(messages: int, sink: dict[str, Any]) -> float:
    """Seconds for smtp-source to deliver `messages` to one `python -m sinks` process."""
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as tmp:
        config = Path(tmp) / "sinks.yaml"
        config.write_text(json.dumps({"sinks": [{"name": "bench", "port": 0, **sink}]}))
        out = Path(tmp) / "journals"
        cmd = [sys.executable, "-m", "sinks", str(config), "--out", str(out)]
        with started(cmd, stdout=subprocess.PIPE) as proc:
            (ready,) = read_json_line(proc)["sinks"]
            seconds = send(int(ready["port"]), messages)
        if proc.returncode != 0:
            fail(f"{sink} exited with {proc.returncode}")
        rows = count_rows(out / "receipts-bench.csv")
        if rows != messages:
            fail(f"{sink}: {rows} receipts, sent {messages}")
        if sink.get("mode") == "backup-mx" and queued(out / "queue-bench.sqlite") != messages:
            fail(f"{sink}: {queued(out / 'queue-bench.sqlite')} queued, sent {messages}")
    return seconds


def backup(durability: str) -> dict[str, Any]:
    """A backup MX whose upstream is a closed loopback port (it only queues)."""
    return {
        "mode": "backup-mx",
        "upstream": {"host": HOST, "port": free_port(), "timeout_s": 1},
        "forward_backoff_s": 30,  # one failed try per message, then quiet: accepting is timed
        "forward_max_backoff_s": 60,
        "durability": durability,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-m", "--messages", type=int, default=5000, help="messages per receiver (default 5000)"
    )
    parser.add_argument(
        "-r",
        "--rounds",
        type=int,
        default=1,
        help="run every receiver this many times, interleaved, and keep each one's best",
    )
    args = parser.parse_args()
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")
    m = args.messages
    print(
        f"smtp-source -s {SESSIONS} -d -l {LENGTH} -m {m}, {HOST}, one receiver at a time"
        + (f", best of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    receivers: tuple[tuple[str, str, Callable[[], float]], ...] = (
        ("a", "plain sink (baseline)", lambda: run_sink(m, {})),
        ("b", "backup-mx, durability: process", lambda: run_sink(m, backup("process"))),
        ("c", "backup-mx, durability: full", lambda: run_sink(m, backup("full"))),
    )
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for key, _label, run in receivers:
            seconds = run()
            best[key] = min(seconds, best.get(key, seconds))
    for key, label, _run in receivers:
        print(f"{key}  {label:<32} {best[key]:7.2f} s  {m / best[key]:9.0f} msgs/s")
    a, b, c = (m / best[k] for k in "abc")
    print(f"ratio c/b={c / b:.2f} b/a={b / a:.2f} c/a={c / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
