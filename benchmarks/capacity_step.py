"""`maildrill capacity capacity-step` at full size, against the scenario's own arithmetic.

Run (from the repository root; about 1-2 minutes, one curve, at most 12 steps of 3 s):

    .venv/bin/python benchmarks/capacity_step.py [--workers 0] [--sink-processes 1] [--out DIR]

capacity-step's primary holds each message 20 ms (+/- 5) at the dot and its sender keeps
25 connections: on paper 25 / 0.020 s = 1,250 msgs/s. The search starts at 300 msgs/s and
climbs by x2, then bisects to 5 %. What it finds is the knee of the whole setup on this
machine: the sink's and the sender's CPU add to the 20 ms per message (on a loaded 2-core
machine the measured p95 latency near the knee is 35-50 ms, so the knee is near 25 / 0.03 s
and not 1,250). `busy connections` in capacity.md shows whether the 25 connections were
the limit (about 25 busy: `saturated`) or the sender was (`sender`).

The last line is the ratio of the knee found to the arithmetic, e.g. `ratio knee/paper=0.72`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PAPER_MSGS_PER_S = 25 / 0.020


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes")
    parser.add_argument("--sink-processes", type=int, default=1, help="the sink's processes")
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="capacity-step-")) / "run"
    cmd = [sys.executable, "-m", "loadtest.cli", "capacity", "capacity-step", "--out", str(out),
           "--step-s", "3", "--start-rate", "300", "--workers", str(args.workers),
           "--set", f"servers.0.sink.processes={args.sink_processes}"]  # fmt: skip
    print(" ".join(cmd), flush=True)
    code = subprocess.run(cmd, timeout=1200).returncode
    report = json.loads((out / "capacity.json").read_text())
    curve = report["curves"][0]
    knee = curve["knee_msgs_per_s"]
    print(f"exit {code}; {out / 'capacity.md'}")
    print(f"knee {knee} msgs/s, first unstable {curve['first_unstable_msgs_per_s']}, "
          f"max stable delivered {curve['max_stable_msgs_per_s']}, past the knee "
          f"{curve['failure']}; paper {PAPER_MSGS_PER_S:g} msgs/s")  # fmt: skip
    print(f"ratio knee/paper={(knee or 0) / PAPER_MSGS_PER_S:.2f}")
    return 0 if code in (0, 1) else code


if __name__ == "__main__":
    sys.exit(main())
