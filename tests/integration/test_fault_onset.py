"""Faults sent ahead start on the sink's own clock, on time, while another process keeps a
core busy: the onset error (the journaled `start` row minus the planned start) measured
from faults-NAME.csv against the plan this test made, never from the sink's own answers.

Each sink is `python -m sinks` in a process of its own, on port 0, as a drill starts it;
the faults go through its control API with `start_at` (epoch seconds), as the drill sends
them. The busy process is bounded in time and killed by its PID at the end, also when a
test fails. The tolerance is for a loaded CI machine (the 10 ms goal is the benchmark's,
benchmarks/fault_onset.py): a fault applied by the old path (an HTTP request per fault
sent at its time by a starved orchestrator) or by a timer armed late fails it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.config import EffectSpec
from sinks.control_client import ControlClient
from sinks.effects import kinds_for
from tests import helpers
from tests.helpers import LATE_S, REPO, read_csv, wait_until

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONPATH=str(REPO))
BUSY_FOR_S = 60  # the busy child's own bound, should the test's end never come
EARLY_S = 0.001  # a start this much before its plan is an error: the clock says so
P99_S = 0.050  # on a loaded CI machine; the benchmark's goal is 10 ms

# Both sorts, in turn: decision-level (reject, latency, drop, busy: the decision path sees
# them from their start) and listener-level (down, flap: a timer on the sink's loop).
KINDS: list[dict[str, Any]] = [
    {"kind": "reject", "stage": "mail", "code": 451, "enhanced": "4.3.2"},
    {"kind": "down"},
    {"kind": "latency", "ms": 5},
    {"kind": "flap", "period_s": 0.04},
    {"kind": "drop"},
    {"kind": "busy"},
]


@pytest.fixture
def busy_core() -> Iterator[subprocess.Popen[bytes]]:
    """A child process spinning on one core for the test; killed by its PID at the end."""
    with helpers.busy_core(BUSY_FOR_S) as proc:
        yield proc


class SinkProcess:
    """`python -m sinks CONFIG --out DIR`: its ready line, a control client per sink."""

    def __init__(self, tmp_path: Path, sinks: list[dict[str, Any]]) -> None:
        config = tmp_path / "sinks.yaml"
        config.write_text(json.dumps({"sinks": sinks}))
        self.journal_dir = tmp_path / "journals"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sinks", str(config), "--out", str(self.journal_dir)],
            stdout=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, "no ready line from the sinks"
        line = json.loads(self.proc.stdout.readline())
        self.ready = {s["name"]: s for s in line["sinks"]}

    def client(self, name: str) -> ControlClient:
        sink = self.ready[name]
        return ControlClient.on_port(sink["control_port"], sink["control_token"], timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.communicate(timeout=10)


@pytest.fixture
def sink_process(tmp_path: Path) -> Iterator[Any]:
    started: list[SinkProcess] = []

    def start(sinks: list[dict[str, Any]]) -> SinkProcess:
        started.append(SinkProcess(tmp_path, sinks))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def schedule(client: ControlClient, kinds: list[dict[str, Any]], first: float, every: float,
             duration: float, mode: str = "sink") -> dict[str, float]:  # fmt: skip
    """Each fault sent ahead, one after another; fault id -> planned start (epoch)."""
    plan = {}
    for n, body in enumerate(kinds):
        start_at = first + n * every
        spec = EffectSpec.model_validate(body, context={"kinds": kinds_for(mode)})
        fault = client.start_fault(spec, duration, start_at)
        assert (fault.state, fault.started) == ("pending", None)
        assert fault.start_at == pytest.approx(start_at, abs=1e-6)
        plan[fault.id] = start_at
    return plan


def onsets(journal: Path, plan: dict[str, float]) -> dict[str, float]:
    """Fault id -> its start row's time minus its planned start, seconds."""
    rows = [r for r in read_csv(journal) if r["state"] == "start" and r["fault_id"] in plan]
    assert sorted(r["fault_id"] for r in rows) == sorted(plan), "one start row per fault"
    assert {r["origin"] for r in rows} == {"schedule"}
    return {r["fault_id"]: float(r["time"]) - plan[r["fault_id"]] for r in rows}


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_faults_sent_ahead_start_on_time_with_a_core_busy(sink_process, busy_core):
    sink = sink_process([{"name": "mx"}])
    client = sink.client("mx")
    count, every, duration = 36, 0.12, 0.08
    kinds = [KINDS[n % len(KINDS)] for n in range(count)]
    first = time.time() + 1.0
    plan = schedule(client, kinds, first, every, duration)
    assert [f.state for f in client.faults()] == ["pending"] * count, "listed while pending"
    end = first + count * every + duration
    assert wait_until(lambda: time.time() > end and client.faults() == [], timeout=30)
    assert busy_core.poll() is None, "the core was busy all along"
    sink.stop()

    errors = onsets(sink.journal_dir / "faults-mx.csv", plan)
    late = sorted(errors.values())
    print(f"onset error over {count} faults: p50 {late[count // 2] * 1e3:.2f} ms, "
          f"p99 {p99(late) * 1e3:.2f} ms, max {late[-1] * 1e3:.2f} ms")  # fmt: skip
    early = {i: e for i, e in errors.items() if e < -EARLY_S}
    assert not early, f"faults started before their time: {early}"
    assert p99(late) <= P99_S, f"onset errors (s): {errors}"
    # Each fault ended at its planned end (start_at + duration), never before.
    stops = {r["fault_id"]: float(r["time"]) for r in read_csv(sink.journal_dir / "faults-mx.csv")
             if r["state"] == "stop" and r["fault_id"] in plan}  # fmt: skip
    assert sorted(stops) == sorted(plan)
    assert all(-EARLY_S <= stops[i] - (plan[i] + duration) < LATE_S for i in plan), stops


def test_workers_proxies_and_backup_mxs_play_what_is_sent_ahead(sink_process, busy_core):
    """`processes: 2` (each worker journals its own start), a proxy in front of a sink, a
    backup MX before it: every one starts its faults on its own clock."""
    upstream = sink_process([{"name": "mx"}])
    port = upstream.ready["mx"]["port"]
    sinks = sink_process([
        {"name": "multi", "processes": 2},
        {"name": "px", "mode": "proxy", "upstream": {"port": port}},
        {"name": "bk", "mode": "backup-mx", "upstream": {"port": port}},
    ])  # fmt: skip
    first = time.time() + 1.0
    plans = {
        "multi": schedule(sinks.client("multi"), [KINDS[0], KINDS[1], KINDS[3]], first, 0.1, 0.06),
        "px": schedule(sinks.client("px"), [{"kind": "reset"}, {"kind": "down"}], first, 0.1,
                       0.06, "proxy"),
        "bk": schedule(sinks.client("bk"), [KINDS[1], KINDS[4]], first, 0.1, 0.06),
    }  # fmt: skip
    assert wait_until(lambda: time.time() > first + 0.5, timeout=5)
    for name in plans:
        assert wait_until(lambda n=name: sinks.client(n).faults() == [], timeout=10), name
    sinks.stop()
    upstream.stop()
    journals = {
        "multi": ["faults-multi.csv", "faults-multi-w1.csv"],
        "px": ["faults-px.csv"],
        "bk": ["faults-bk.csv"],
    }
    for name, files in journals.items():
        for file in files:
            errors = onsets(sinks.journal_dir / file, plans[name])
            assert all(-EARLY_S <= e <= P99_S for e in errors.values()), (file, errors)
