"""`maildrill capacity capacity-step` against the scenario's own arithmetic, and the
machine's ceiling at the old 20 ms setting.

Run (from the repository root; about 4-5 minutes: three curves of at most 12-16 steps of 3 s):

    .venv/bin/python benchmarks/capacity_step.py [--workers 0] [--sink-processes 1] [--out DIR]

1. `shipped`: capacity-step as it is: 50 connections, 200 ms per message at the dot, on
   paper 50 / 0.2 s = 250 msgs/s. The knee found must be within 5 % of that.
2. `20ms`: the scenario as it was: 25 connections, 20 ms per message, 1,250 msgs/s on paper.
   Each message also costs the SMTP dialogue around the dot (1-2 ms on loopback when the
   machine is idle, far more when it is loaded), which is 5-10 % of 20 ms: the knee lands
   under the paper, and on a loaded machine the harness's CPU brings it lower still. The
   harness figures say which: `harness_bound` when the sender or the sink ran out of CPU.
3. `ceiling`: 20 ms with 100 connections (5,000 msgs/s on paper, more than one Locust
   process can send): the load generator runs out before the server, the steps past it are
   `harness_bound`, and the curve ends `harness_bound`: "the knee is at least X", X being
   this machine's ceiling for one sender process, not the server's. (On a machine whose
   load comes and goes the steps near the ceiling are noisy, and the search may run out of
   steps first: the harness-bound steps still say where the ceiling is.)

Each curve prints its knee, the ratio to the paper, how the search ended and the busiest
harness process's CPU at the highest step (ran + waited for a CPU, shares of one core). Exit
1 when the shipped knee is not within 5 % of its arithmetic, or when no unstable step of
the ceiling run was harness_bound; the 20 ms run documents the machine and never fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LATENCY = "servers.0.sink.behaviours.0.ms"
CAP = "servers.0.sink.behaviours.1.max"


@dataclass(frozen=True)
class Case:
    name: str
    connections: int
    latency_ms: float
    start_rate: float
    max_rate: float
    max_steps: int = 12

    @property
    def paper(self) -> float:
        return self.connections * 1000 / self.latency_ms

    def overrides(self) -> list[str]:
        sets = [f"users={self.connections}", f"{LATENCY}={self.latency_ms:g}",
                f"{CAP}={self.connections + 10}"]  # fmt: skip
        return [arg for s in sets for arg in ("--set", s)]


CASES = [
    Case("shipped", 50, 200, 60, 300),
    Case("20ms", 25, 20, 300, 1600),
    Case("ceiling", 100, 20, 1200, 5000, max_steps=16),
]


def measure(case: Case, out: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, "-m", "loadtest.cli", "capacity", "capacity-step", "--out", str(out),
           "--step-s", "3", "--start-rate", f"{case.start_rate:g}", "--max-rate",
           f"{case.max_rate:g}", "--max-steps", str(case.max_steps),
           "--workers", str(args.workers),
           "--set", f"servers.0.sink.processes={args.sink_processes}",
           *(case.overrides() if case.name != "shipped" else [])]  # fmt: skip
    print(" ".join(cmd), flush=True)
    code = subprocess.run(cmd, timeout=1200).returncode
    curve: dict[str, object] = json.loads((out / "capacity.json").read_text())["curves"][0]
    curve["exit"] = code
    return curve


def line(case: Case, curve: dict[str, object]) -> str:
    knee = curve["knee_msgs_per_s"]
    steps = curve["steps"]
    assert isinstance(steps, list)
    top = max(steps, key=lambda st: st["rate"])
    ratio = (knee if isinstance(knee, float | int) else 0) / case.paper
    harness = (f"sender {top['sender_cpu']}+{top['sender_wait']}, sink {top['sink_cpu']}+"
               f"{top['sink_wait']} of a core, machine {top['machine_busy']} busy")  # fmt: skip
    bound = sum(1 for st in steps if st["harness_bound"])
    return (f"{case.name}: {case.connections} x {case.latency_ms:g} ms, paper "
            f"{case.paper:g} msgs/s: knee {knee}, first unstable "
            f"{curve['first_unstable_msgs_per_s']}, harness ceiling "
            f"{curve['harness_bound_msgs_per_s']}, ending {curve['ending']}; "
            f"{bound} of {len(steps)} steps harness_bound; at {top['rate']} msgs/s {harness}; "
            f"ratio knee/paper={ratio:.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes")
    parser.add_argument("--sink-processes", type=int, default=1, help="the sink's processes")
    parser.add_argument("--out", type=Path, help="directory for the runs (default: temporary)")
    parser.add_argument("--only", choices=[c.name for c in CASES], help="one case")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="capacity-step-"))
    failed = []
    for case in CASES:
        if args.only and case.name != args.only:
            continue
        curve = measure(case, base / case.name, args)
        print(line(case, curve), flush=True)
        knee = curve["knee_msgs_per_s"]
        if case.name == "shipped" and (
            not isinstance(knee, float | int) or abs(knee - case.paper) > 0.05 * case.paper
        ):
            failed.append(f"shipped: knee {knee} not within 5 % of {case.paper:g}")
        steps = curve["steps"]
        assert isinstance(steps, list)
        if case.name == "ceiling" and not any(
            st["harness_bound"] and not st["stable"] for st in steps
        ):
            failed.append("ceiling: no unstable step was harness_bound")
    print(f"runs in {base}")
    for why in failed:
        print(f"FAILED {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
