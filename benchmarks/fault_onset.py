"""Fault onset error: how late a sink starts a fault sent ahead, while a core is busy.

Run (from the repository root):

    .venv/bin/python benchmarks/fault_onset.py [--faults 300] [--every 0.05] [--processes 1]

A drill sends each fault to its sink ahead, with its epoch start (`start_at`), and the sink
starts it on its own clock (sinks/host.py). This starts one sink as a drill does
(`python -m sinks`, uvloop, its own process, port 0), and a child process spinning on one
core for the whole measurement (bounded in time, killed by its PID at the end). It sends
`--faults` short faults ahead, one every `--every` seconds, of both sorts in turn:
decision-level (reject, latency, drop, busy: the decision path sees them from their
start) and listener-level (down, flap: a timer on the sink's loop closes the listener).

The onset error of a fault is its `start` row in faults-NAME.csv (the sink's own reading
of the clock when it first acted with the fault in force) minus its planned start; the
plan is this script's, the rows the sink's. Nothing else is asked of the sink. A fault
started before its time, or one without exactly one start row, makes the run invalid
(exit 1).

Target: p99 < 10 ms. The last line says whether it was met.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sinks.config import EffectSpec  # noqa: E402
from sinks.control_client import ControlClient  # noqa: E402
from tests.helpers import busy_core  # noqa: E402

GOAL_S = 0.010
LEAD_S = 1.0  # the first fault's start after the last was sent
KINDS: list[tuple[str, dict[str, Any]]] = [
    ("decision", {"kind": "reject", "stage": "mail", "code": 451, "enhanced": "4.3.2"}),
    ("listener", {"kind": "down"}),
    ("decision", {"kind": "latency", "ms": 5}),
    ("listener", {"kind": "flap", "period_s": 0.02}),
    ("decision", {"kind": "drop"}),
    ("decision", {"kind": "busy"}),
]


@contextlib.contextmanager
def sink(journal_dir: Path, processes: int) -> Iterator[dict[str, Any]]:
    """`python -m sinks` with one sink `mx`; its ready line. SIGTERM (then SIGKILL) by PID."""
    config = journal_dir / "sinks.json"
    config.write_text(json.dumps({"sinks": [{"name": "mx", "processes": processes}]}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "sinks", str(config), "--out", str(journal_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        if not ready:
            sys.exit("fault_onset: the sink did not start in 30 s")
        (line,) = json.loads(proc.stdout.readline())["sinks"]
        yield line
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()


def invalid(message: str) -> int:
    print(f"\n*** BENCHMARK INVALID: {message} ***\n", file=sys.stderr, flush=True)
    return 1


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, errors: list[float]) -> str:
    ordered = sorted(errors)
    p50, p99 = quantile(ordered, 0.5), quantile(ordered, 0.99)
    return (f"{label:<9} n={len(ordered):4d}  p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
            f"max {ordered[-1] * 1e3:6.2f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=300, help="faults sent ahead")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between starts")
    parser.add_argument("--duration", type=float, default=0.03, help="each fault's seconds")
    parser.add_argument("--processes", type=int, default=1, help="the sink's `processes`")
    parser.add_argument("--no-busy", action="store_true", help="without the busy core")
    args = parser.parse_args()
    if not (0 < args.duration < args.every) or args.faults < 1:
        parser.error("need --faults >= 1 and 0 < --duration < --every")

    span = LEAD_S + args.faults * args.every + 30
    with tempfile.TemporaryDirectory(prefix="fault-onset-") as tmp:
        journal_dir = Path(tmp)
        busy = contextlib.nullcontext() if args.no_busy else busy_core(span)
        with busy, sink(journal_dir, args.processes) as ready:
            client = ControlClient.on_port(ready["control_port"], ready["control_token"], 10)
            specs = [
                (sort, EffectSpec.model_validate(body))
                for sort, body in (KINDS[n % len(KINDS)] for n in range(args.faults))
            ]
            sent = time.time()
            first = sent + LEAD_S + args.faults * 0.002  # room to send them all first
            plan: dict[str, tuple[str, float]] = {}
            for n, (sort, spec) in enumerate(specs):
                start_at = first + n * args.every
                fault = client.start_fault(spec, args.duration, start_at)
                plan[fault.id] = (sort, start_at)
            if time.time() >= first:
                return invalid("sending the faults took past the first one's start")
            end = first + args.faults * args.every + args.duration
            while time.time() < end + 0.5 or client.faults():
                time.sleep(0.2)
        journals = sorted(journal_dir.glob("faults-mx*.csv"))
        rows = [r for path in journals for r in csv.DictReader(path.open(newline=""))]

    starts: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["state"] == "start" and row["fault_id"] in plan:
            key = (row["fault_id"], row["worker"])
            if key in starts:
                return invalid(f"two start rows for {key}")
            starts[key] = float(row["time"])
    if len(starts) != len(plan) * args.processes:
        return invalid(f"{len(starts)} start rows for {len(plan)} faults x {args.processes}")
    errors = {key: when - plan[key[0]][1] for key, when in starts.items()}
    early = {k: e for k, e in errors.items() if e < 0}
    if early:
        worst = min(early.values())
        return invalid(f"{len(early)} faults started before their time (by up to {-worst} s)")

    load = "no other load" if args.no_busy else "a child process keeping one core busy"
    print(f"fault onset error, {args.faults} faults sent ahead, one every {args.every:g} s, "
          f"sink with processes: {args.processes}, {load}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for sort in ("decision", "listener"):
        print(line(sort, [e for k, e in errors.items() if plan[k[0]][0] == sort]))
    every = sorted(errors.values())
    print(line("all", every))
    met = quantile(every, 0.99) < GOAL_S
    print(f"p99 < {GOAL_S * 1e3:.0f} ms: {'yes' if met else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
