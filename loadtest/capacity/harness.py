"""Was the harness, not the server, the limit of a capacity step?

A capacity step measures the whole setup on one machine: the sender (Locust) and the local
sinks share its cores with each other and with whatever else runs there. When the sender
cannot keep pace, its sends start late and its event loop reads the servers' replies late,
so the step looks like a server past its knee (backlog, latency) while the server was
waiting for it. Such a step is `harness_bound`: the knee is at least what was stable below
it, and the search must not take it for the server's instability.

Locust warns about its own CPU (`locust.runners.CPU_WARNING_THRESHOLD`, 90 % of a core,
from psutil every 10 s), which misses two things here: a 3 s step is shorter than its
interval, and on a shared machine a process starved of CPU uses little of it while it waits
to run. So per step, over the step's steady part, each harness process's time is read from
/proc/PID/task/*/schedstat: the time it ran on a CPU and the time it was runnable but
waited for one (the scheduling delay). Its demand is the two summed, per second of the
window: 1.0 means it wanted a whole core all the time. A process that demanded at least
`DEMAND_BOUND` of a core was the limit: the sender, or a local sink (a simulated server that
cannot run as configured measures the machine, not its behaviours). The bound is a little
under Locust's 90 % because a sender that could not keep up still measured 0.88-0.92 here
(capacity-step at 20 ms with 100 connections, the steps past one Locust process's ceiling:
the rest of its time it was neither running nor waiting for a CPU, but blocked), while one
that kept up with room to spare measured at most 0.6 on a busy machine. The machine's busy
share (/proc/stat) is reported beside it, to say how loaded the machine was.

`HarnessMonitor` samples those counters in a thread while a step runs (I/O, no decisions);
`load_between` and `bound_why` are pure.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from loadtest.supervise import Supervisor

DEMAND_BOUND = 0.85  # of one core; locust.runners.CPU_WARNING_THRESHOLD is 90 %
SAMPLE_S = 0.25
SENDER_ROLES = ("locust", "worker")
SINK_ROLES = ("sink",)
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcTimes:
    group: str  # sender or sink
    name: str  # the child's name (locust, locust-worker-1, primary), or NAME/PID below it
    cpu_s: float  # on a CPU, all threads
    wait_s: float  # runnable, waiting for a CPU, all threads


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    machine_busy_s: float  # /proc/stat: all cores, not idle nor iowait
    machine_total_s: float
    procs: dict[int, ProcTimes]


@dataclass(frozen=True)
class HarnessLoad:
    """A step's harness, over its steady part: shares of one core, per second of window."""

    sender_cpu: float | None  # the busiest sender process: on a CPU
    sender_wait: float | None  # the same process: runnable, waiting for a CPU
    sink_cpu: float | None  # the busiest local sink process
    sink_wait: float | None
    machine_busy: float | None  # all cores: the share of them that was busy


def schedstat(pid: int) -> tuple[float, float] | None:
    """(on-CPU s, waiting s) summed over a process's threads; None when it is gone or the
    kernel does not keep scheduler statistics."""
    cpu = wait = 0
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            with (task / "schedstat").open() as f:
                fields = f.read().split()
            cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return cpu / 1e9, wait / 1e9


def descendants(pid: int) -> list[int]:
    """A process's children, their children, ... (a sink with `processes: N` forks)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list((PROC / str(parent) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def machine_times() -> tuple[float, float]:
    """(busy, total) seconds of all cores since boot, from /proc/stat's `cpu` line."""
    try:
        fields = [int(x) for x in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (total - idle) / hz, total / hz


class HarnessMonitor:
    """Samples the run's sender and sink processes every SAMPLE_S in a thread of its own,
    from `start()` to `stop()`; the children are read from the run's Supervisor at each
    sample, so processes started after `start()` are seen."""

    def __init__(self, children: Supervisor, interval_s: float = SAMPLE_S) -> None:
        self.children = children
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-monitor", daemon=True)

    def start(self) -> HarnessMonitor:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval_s)

    def sample(self) -> Sample:
        procs: dict[int, ProcTimes] = {}
        for child in list(self.children.children):
            group = "sender" if child.role in SENDER_ROLES else "sink"
            if child.role not in SENDER_ROLES + SINK_ROLES or child.proc.poll() is not None:
                continue
            pid = child.proc.pid
            for p in [pid, *descendants(pid)]:
                times = schedstat(p)
                if times is not None:
                    name = child.name if p == pid else f"{child.name}/{p}"
                    procs[p] = ProcTimes(group, name, *times)
        busy, total = machine_times()
        return Sample(time.time(), busy, total, procs)


def load_between(samples: list[Sample], start: float, end: float) -> HarnessLoad:
    """Each process's shares between the first sample at or after `start` and the last at
    or before `end` (the step's steady part); the busiest sender and sink process."""
    inside = [s for s in samples if start <= s.at <= end]
    if len(inside) < 2:
        return HarnessLoad(None, None, None, None, None)
    first, last = inside[0], inside[-1]
    span = last.at - first.at
    shares: dict[str, list[tuple[float, float]]] = {"sender": [], "sink": []}
    for pid, was in first.procs.items():
        now = last.procs.get(pid)
        if now is None or now.name != was.name:
            continue
        cpu, wait = (now.cpu_s - was.cpu_s) / span, (now.wait_s - was.wait_s) / span
        shares[was.group].append((round(cpu, 3), round(wait, 3)))

    def busiest(group: str) -> tuple[float | None, float | None]:
        """The process of the group that wanted the most CPU: ran plus waited."""
        if not shares[group]:
            return None, None
        return max(shares[group], key=lambda s: s[0] + s[1])

    total = last.machine_total_s - first.machine_total_s
    machine = (last.machine_busy_s - first.machine_busy_s) / total if total > 0 else None
    return HarnessLoad(
        *busiest("sender"),
        *busiest("sink"),
        machine_busy=None if machine is None else round(machine, 3),
    )


def demand(cpu: float | None, wait: float | None) -> float:
    return (cpu or 0.0) + (wait or 0.0)


def bound_why(load: HarnessLoad, sender_idle: bool) -> str | None:
    """Why the harness limited the step (one line), or None when it did not.

    `sender_idle`: the step's backlog grew while its connections were mostly idle (the
    stability rule's `sender` failure): the sender could not offer the rate, whatever its
    CPU says.
    """
    why = []
    for group, cpu, wait in (
        ("sender", load.sender_cpu, load.sender_wait),
        ("sink", load.sink_cpu, load.sink_wait),
    ):
        if demand(cpu, wait) >= DEMAND_BOUND:
            why.append(
                f"a {group} process wanted {demand(cpu, wait):.2f} of a core "
                f"(ran {cpu or 0:.2f}, waited {wait or 0:.2f} for a CPU)"
            )
    if sender_idle:
        why.append("the backlog grew while the connections were mostly idle")
    return "; ".join(why) or None


class HasHarnessFigures(Protocol):
    """A step's figures (StepFigures) or its record in capacity.json (CurveStep)."""

    @property
    def sender_cpu(self) -> float | None: ...
    @property
    def sender_wait(self) -> float | None: ...
    @property
    def sink_cpu(self) -> float | None: ...
    @property
    def sink_wait(self) -> float | None: ...
    @property
    def machine_busy(self) -> float | None: ...


def harness_line(f: HasHarnessFigures) -> str:
    """One step's harness in words: each group's busiest process, ran+waited of a core."""
    parts = [
        f"{group} {cpu:.2f}+{wait or 0:.2f}"
        for group, cpu, wait in (
            ("sender", f.sender_cpu, f.sender_wait),
            ("sink", f.sink_cpu, f.sink_wait),
        )
        if cpu is not None
    ]
    if not parts:
        return "harness not measured"
    busy = f", machine {f.machine_busy:.0%} busy" if f.machine_busy is not None else ""
    return f"harness: {', '.join(parts)} of a core (ran+waited){busy}"
