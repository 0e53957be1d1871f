"""The harness ceiling: the highest rate `maildrill run` sustains end to end on this machine.

Run (from the repository root; needs Postfix's smtp-source and smtp-sink, never the daemon):

    .venv/bin/python benchmarks/harness_ceiling.py [--quick] [--rounds 1]

Everything real: each step is a whole `maildrill run` (orchestrator, Locust, one local
maildrill sink, every journal on, the report written) of a generated scenario, a flat
schedule of `rate` msgs/s for a few seconds, 20 users, 5000-byte messages, one server on
127.0.0.1. Which rate comes next is the capacity search's (loadtest.capacity.search:
climb x1.5 from 2000 msgs/s until a step is unstable, then bisect to within 5 %, an
unstable refining step run once more); whether a step is stable is the capacity search's
rule too (loadtest.capacity.stability, figures by loadtest.capacity.measure from the run's
attempts.csv): at least 95 % of the offered messages accepted on time and a backlog that
does not grow by more than 2 % of the rate a second. The ceiling is the highest stable
rate: of one Locust process, then of `--workers 2`.

In the same run, Postfix's C smtp-source sends the same messages (20 sessions, 5000
bytes) to Postfix's smtp-sink (driver_throughput.py's case a): the machine's ceiling for
SMTP over loopback. The last line is the ratios, maildrill's ceiling over smtp-source's.

Every step checks its run: the sink's receipts journal holds a row for every accepted
attempt, and beyond them at most one for each attempt whose fate the sender could not know
(interrupted at the end of the drain, a timeout or a drop), or the benchmark fails loudly
(exit 1). Every load is bounded in count (the schedule's messages) and time (drain_s, a
timeout on each run).
`--quick` runs shorter steps to within 10 %, without confirming (about 2-3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from driver_throughput import LENGTH, USERS, PostfixSink, fail, run_source, stop

from loadtest.analysis.capacity import on_time_s
from loadtest.capacity.measure import step_figures
from loadtest.capacity.search import Search, SearchResult, SearchSettings
from loadtest.capacity.stability import StepFigures

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
RUN_TIMEOUT_S = 120  # hard bound on any one `maildrill run`
SOURCE_MESSAGES = 50000


@dataclass(frozen=True)
class Pace:
    """How long each step runs and how finely the search looks."""

    step_s: float
    drain_s: float
    precision: float
    confirm: bool
    max_steps: int


FULL = Pace(step_s=6, drain_s=3, precision=0.05, confirm=True, max_steps=10)
QUICK = Pace(step_s=4, drain_s=2, precision=0.10, confirm=False, max_steps=7)


def scenario(rate: float, pace: Pace) -> dict[str, Any]:
    return {
        "name": "harness-ceiling",
        "servers": [{"name": "primary", "priority": 10, "local": True, "pipelining": True}],
        "routing": {"policy": "failover"},
        "campaign": {
            "seed": 1,
            "streams": [{"name": "promotional", "size_median": LENGTH, "size_sigma": 0}],
            "schedule": [{"duration_s": pace.step_s, "rate": rate}],
            "drain_s": pace.drain_s,
        },
        "users": USERS,
    }


TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.2


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:  # gone
        return []
    return found + [d for child in found for d in _descendants(child)]


class CpuWatch:
    """The CPU seconds the run's processes have used, by role, sampled as the run goes:
    `sender` (Locust: the one process, or the master and its workers), `sink`, `other`
    (the orchestrator, the prober). A process's role is read from its command line."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.roles: dict[int, str] = {}
        self.seconds: dict[int, float] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        for pid in [self.root, *_descendants(self.root)]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                if cmdline.strip():  # read again: a child forked, not yet exec'd, has ours
                    role = "sender" if "-m locust" in cmdline else "other"
                    self.roles[pid] = "sink" if "-m sinks" in cmdline else role
                elif pid not in self.roles:
                    continue
            except OSError:
                continue
            self.seconds[pid] = (int(fields[11]) + int(fields[12])) / TICK
        by_role: dict[str, float] = {}
        for pid, used in self.seconds.items():
            by_role[self.roles[pid]] = by_role.get(self.roles[pid], 0.0) + used
        self.samples.append((time.time(), by_role))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds by role from the last sample at or before `start` to the first at
        or after `end` (a little more than the span, never less)."""
        before = [s for t, s in self.samples if t <= start] or [self.samples[0][1]]
        after = [s for t, s in self.samples if t >= end] or [self.samples[-1][1]]
        first, last = before[-1], after[0]
        return {role: last[role] - first.get(role, 0.0) for role in last}


def maildrill_run(
    rate: float, pace: Pace, workers: int, tree: Path, tmp: Path
) -> tuple[Path, CpuWatch]:
    """One bounded `maildrill run` of the checkout `tree`: its run directory (a failed run
    fails loudly) and the CPU its processes used."""
    path = tmp / f"scenario-{rate:g}-{workers}.yaml"
    path.write_text(json.dumps(scenario(rate, pace)))  # JSON is YAML
    out = tmp / f"run-{rate:g}-{workers}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(out)]
    cmd += ["--workers", str(workers)]
    log = tmp / "run.log"
    with log.open("w") as f:
        env = {**os.environ, "PYTHONPATH": str(tree)}  # the Locust workers too
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=tree, env=env)
        watch = CpuWatch(proc.pid)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    stop(proc, signal.SIGINT)
                    fail(f"maildrill run took over {RUN_TIMEOUT_S} s: {' '.join(cmd)}")
                watch.sample()
                time.sleep(SAMPLE_S)
        finally:
            stop(proc)
    if proc.returncode != 0:
        fail(f"maildrill run exited {proc.returncode}: {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return out, watch


@dataclass(frozen=True)
class Step:
    figures: StepFigures
    us_per_msg: dict[str, float]  # CPU by role over the load, per accepted message


def measure(run: Path, watch: CpuWatch, rate: float, pace: Pace) -> Step:
    """The step's figures from its journals, after checking the journals agree."""
    attempts = pd.read_csv(run / "attempts.csv")
    receipts = pd.read_csv(run / "receipts-primary.csv")
    accepted = attempts[attempts["outcome"] == "accepted"]
    # An attempt cut at the end of the drain (interrupted) or after its dot (a timeout or a
    # drop) may have arrived all the same: a receipt beyond the accepted ones, at most one each.
    unsure = int(attempts["outcome"].isin(["interrupted", "timeout", "dropped"]).sum())
    if not len(accepted) <= len(receipts) <= len(accepted) + unsure:
        fail(
            f"{run}: {len(accepted)} accepted attempts (+{unsure} unsure), {len(receipts)} receipts"
        )
    t0 = float(json.loads((run / "run.json").read_text())["t0"])
    figures = step_figures(attempts, t0, rate, pace.step_s, on_time_s(None), connections=USERS)
    used = watch.between(t0, float(accepted["end"].max())) if len(accepted) else {}
    per_msg = {role: 1e6 * s / max(1, len(accepted)) for role, s in used.items()}
    return Step(figures, per_msg)


def search(pace: Pace, workers: int, tree: Path, tmp: Path) -> tuple[SearchResult, Step | None]:
    """The ceiling of `tree` with `workers`, and the step that measured it."""
    settings = SearchSettings(
        start_rate=2000,
        factor=1.5,
        precision=pace.precision,
        max_rate=40000,
        max_steps=pace.max_steps,
        confirm=pace.confirm,
    )
    found = Search(settings)
    label = ("one process" if workers == 0 else f"--workers {workers}") + f" ({tree.name})"
    steps: dict[float, Step] = {}
    while (rate := found.next_rate()) is not None:
        step = measure(*maildrill_run(rate, pace, workers, tree, tmp), rate, pace)
        verdict = found.record(step.figures)
        if verdict.stable:
            steps[rate] = step
        f = step.figures
        print(
            f"  {label}: {rate:7.0f} msgs/s offered, {f.accepted_msgs_per_s:7.0f} accepted on"
            f" time, backlog {f.backlog_growth_msgs_per_s:+8.1f} msgs/s, CPU {cpu(step)}:"
            f" {verdict.why}",
            flush=True,
        )
    result = found.result()
    knee = result.knee_msgs_per_s
    return result, steps.get(knee) if knee is not None else None


def cpu(step: Step | None) -> str:
    if step is None:
        return "?"
    roles = ("sender", "sink", "other")
    return " ".join(f"{r} {step.us_per_msg.get(r, 0.0):.0f}" for r in roles) + " us/msg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps, to within 10 %%")
    parser.add_argument(
        "-r", "--rounds", type=int, default=1, help="smtp-source runs (the best counts)"
    )
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        help="a checkout of maildrill to measure (repeatable, e.g. main's beside this one's,"
        " for a before and after in one run; default: this checkout)",
    )
    args = parser.parse_args()
    pace = QUICK if args.quick else FULL
    trees: list[Path] = [t.resolve() for t in args.tree or [ROOT]]
    for tree in trees:
        if not (tree / "loadtest" / "cli.py").is_file():
            print(f"harness_ceiling: {tree} is not a maildrill checkout", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="maildrill-ceiling-") as name:
        tmp = Path(name)
        sink = PostfixSink(tmp)
        try:
            source = max(
                n / s for n, s in (run_source(sink, SOURCE_MESSAGES) for _ in range(args.rounds))
            )
        finally:
            sink.close()
        print(f"smtp-source -> smtp-sink: {source:.0f} msgs/s", flush=True)
        ceilings: dict[tuple[Path, int], float] = {}
        costs: dict[tuple[Path, int], str] = {}
        for workers in (0, 2):
            for tree in trees:
                result, at = search(pace, workers, tree, tmp)
                if result.knee_msgs_per_s is None:
                    fail(f"{tree}, --workers {workers}: no stable rate found ({result.ending})")
                ceilings[tree, workers] = result.knee_msgs_per_s
                costs[tree, workers] = cpu(at)
                print(
                    f"{tree.name}, --workers {workers}: ceiling {result.knee_msgs_per_s:.0f}"
                    f" msgs/s (first unstable {result.first_unstable_msgs_per_s or 0:.0f},"
                    f" {result.ending}); CPU there: {cpu(at)}",
                    flush=True,
                )
    for tree in trees:
        one, two = ceilings[tree, 0], ceilings[tree, 2]
        print(
            f"CPU at the ceiling, {tree.name}: one process {costs[tree, 0]};"
            f" --workers 2 {costs[tree, 2]}"
        )
        print(
            f"ceiling {tree.name}: one process {one:.0f}, --workers 2 {two:.0f}, smtp-source"
            f" {source:.0f} msgs/s; ratio one/source={one / source:.2f}"
            f" two/source={two / source:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
