"""HarnessMonitor on real processes: a sender that spins on a core is harness-bound, one that
sleeps is not, and a sink's forked process counts as the sink's; the CPU it reports is
checked against the kernel's other count (/proc/PID/stat utime + stime)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from loadtest.capacity.harness import DEMAND_BOUND, HarnessMonitor, bound_why, load_between
from loadtest.supervise import Supervisor
from tests.helpers import child_pids, wait_until

SPIN_S = 6.0  # each spinner's own bound, should the test's end never come
SPIN = f"import time\nend = time.time() + {SPIN_S}\nwhile time.time() < end: pass\n"
# A "sink" that forks a spinner and waits for it: its CPU is its child's.
FORKS = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {SPIN!r}])\n"
SLEEP = f"import time\ntime.sleep({SPIN_S})\n"


def cpu_ticks_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def children(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    sup = Supervisor(tmp_path)
    yield sup
    for child in sup.children:
        for pid in child_pids(child.proc.pid):
            os.kill(pid, signal.SIGKILL)
        child.stop(signal.SIGKILL, 5)


def test_a_spinning_sender_is_harness_bound_and_a_sleeping_one_is_not(children) -> None:
    spinner = children.spawn("locust", "locust", [sys.executable, "-c", SPIN])
    sleeper = children.spawn("worker", "locust-worker-1", [sys.executable, "-c", SLEEP])
    sink = children.spawn("sink", "primary", [sys.executable, "-c", FORKS])
    assert wait_until(lambda: len(child_pids(sink.proc.pid)) == 1, timeout=10)
    forked = child_pids(sink.proc.pid)[0]
    monitor = HarnessMonitor(children, interval_s=0.1).start()
    try:
        assert wait_until(lambda: len(monitor.samples) >= 2, timeout=10)
        start = monitor.samples[-1].at
        ticks = cpu_ticks_s(spinner.proc.pid), cpu_ticks_s(forked)
        time.sleep(1.5)
        ticks_end = cpu_ticks_s(spinner.proc.pid), cpu_ticks_s(forked)
        assert wait_until(lambda: monitor.samples[-1].at > start + 1.5, timeout=10)
    finally:
        samples = monitor.stop()
    window = [s for s in samples if s.at >= start]
    end = next(s.at for s in window if s.at > start + 1.5)
    load = load_between(samples, start, end)
    # A spinner wants its core all the time: ran + waited is one core, however loaded the
    # machine (what it did not run, it waited for).
    assert load.sender_cpu is not None
    assert load.sink_cpu is not None
    assert load.sender_cpu + (load.sender_wait or 0) >= DEMAND_BOUND
    assert load.sink_cpu + (load.sink_wait or 0) >= DEMAND_BOUND  # the forked spinner's
    # The CPU share against the kernel's tick count over about the same 1.5 s: samples are
    # 0.1 s apart, so the windows differ by up to 0.2 s of the spinner's running.
    wall = end - start
    kernel = (ticks_end[0] - ticks[0]) / 1.5, (ticks_end[1] - ticks[1]) / 1.5
    assert load.sender_cpu == pytest.approx(kernel[0], abs=0.2 / wall + 0.05)
    assert load.sink_cpu == pytest.approx(kernel[1], abs=0.2 / wall + 0.05)
    why = bound_why(load, sender_idle=False) or ""
    assert why.startswith("a sender process wanted")
    assert "a sink process wanted" in why
    # The sleeping worker is a sender process too, and wanted next to nothing: the busiest
    # one is the spinner, not a mean of the two. A mean would demand about half a core, under
    # DEMAND_BOUND (checked above); how much of its core the spinner got depends on the
    # machine's load (0.29 in a CI run with the suite beside it), so its share is not pinned.
    assert load.sender_cpu > cpu_ticks_s(sleeper.proc.pid) / wall
    assert load.machine_busy is not None
    assert 0 < load.machine_busy <= 1
