"""`maildrill capacity` end to end at small scale: a real sink whose latency caps it, real
Locust, one `maildrill run` per step; every figure recounted from the steps' journals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import yaml
from PIL import Image

from loadtest.capacity.model import CapacityReport
from tests.helpers import read_csv

pytestmark = pytest.mark.slow

# Ten connections, each message held 200 ms at the dot: the scenario's own arithmetic says
# 10 / 0.2 s = 50 msgs/s, and no more.
USERS, LATENCY_MS = 10, 200
ARITHMETIC = USERS * 1000 / LATENCY_MS
STEP_S = 2.0
SCENARIO = {
    "name": "capped",
    "description": "one sink held 200 ms per message, ten connections",
    "servers": [
        {
            "name": "primary",
            "local": True,
            "sink": {"behaviours": [{"kind": "latency", "ms": LATENCY_MS, "stages": ["dot"]}]},
        }
    ],
    "campaign": {
        "seed": 3,
        "streams": [{"name": "bulk", "size_median": 2000}],
        "schedule": [{"duration_s": 5, "rate": 35}, {"duration_s": 5, "rate": 80}],
    },
    "users": USERS,
    "slo": ["p95_latency_ms <= 1000"],
}


def test_capacity_finds_the_knee_the_arithmetic_predicts(tmp_path: Path) -> None:
    scenario = tmp_path / "capped.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / "cap"
    # From 35 msgs/s, x1.5: 35 stable, 52.5 not, then three halvings to within 5 %.
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "capacity", str(scenario), "--out", str(out),
         "--step-s", str(STEP_S), "--factor", "1.5", "--max-steps", "8"],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = CapacityReport.model_validate_json((out / "capacity.json").read_text())
    assert [c.name for c in report.curves] == ["primary"]  # one server: no `all` curve
    curve = report.curves[0]
    assert curve.ending == "converged"
    knee, unstable = curve.knee_msgs_per_s, curve.first_unstable_msgs_per_s
    assert knee is not None
    assert unstable is not None
    assert abs(knee - ARITHMETIC) <= 0.05 * ARITHMETIC, proc.stderr
    assert unstable <= knee * 1.05
    assert curve.failure == "saturated"  # no errors: mail waited for a free connection
    assert len(curve.steps) <= 8
    assert max(st.rate for st in curve.steps) <= 80  # the schedule's highest rate
    for st in curve.steps:
        offered, delivered, on_time, grew = recount(out / st.run_dir)
        assert st.offered_msgs_per_s == pytest.approx(offered, abs=1e-3)
        assert st.delivered_msgs_per_s == pytest.approx(delivered, abs=1e-3)
        assert st.accepted_msgs_per_s == pytest.approx(on_time, abs=1e-3)
        assert st.backlog_growth_msgs_per_s == pytest.approx(grew, abs=1e-3)
        # Never more than the arithmetic allows, whatever was offered: each connection's
        # attempts take >= 200 ms, so at most floor(1.5 s / 0.2 s) + 1 of them end in the
        # 1.5 s steady part.
        steady_s = 0.75 * STEP_S
        assert delivered <= USERS * (int(steady_s * 1000 / LATENCY_MS) + 1) / steady_s
        # The verdict, from the recount: on time >= 95 % and a backlog growing by at most
        # 2 % of the rate per second (p95 is far under the 1000 ms bound here).
        assert st.stable == (on_time >= 0.95 * st.rate and grew <= 0.02 * st.rate)
        if st.stable:  # and a stable step kept up
            assert delivered >= 0.9 * st.rate
    assert any(not st.stable for st in curve.steps)
    assert "| primary | primary |" in (out / "capacity.md").read_text()
    with Image.open(out / "plots" / "capacity.png") as image:
        assert image.size[0] > 500


def recount(step_dir: Path) -> tuple[float, float, float, float]:
    """From one step's attempts.csv and run.json, with the csv module: offered msgs/s
    (first attempts intended in the step), delivered msgs/s (accepted attempts ended in its
    last three quarters), accepted on time msgs/s (offered in the step, accepted within
    1 s + the 1 s p95 bound of intended) and the least-squares slope of the backlog
    (offered in the step, not yet accepted) at 24 instants over the last three quarters."""
    t0 = json.loads((step_dir / "run.json").read_text())["t0"]
    rows = read_csv(step_dir / "attempts.csv")
    in_step = [r for r in rows if 0 <= float(r["intended"]) - t0 < STEP_S]
    offered_at = sorted(float(r["intended"]) - t0 for r in in_step if r["attempt"] == "1")
    accepted = [r for r in rows if r["outcome"] == "accepted"]
    steady = [r for r in accepted if STEP_S / 4 <= float(r["end"]) - t0 < STEP_S]
    firsts: dict[str, dict[str, str]] = {}
    taken = [r for r in in_step if r["outcome"] == "accepted"]
    for r in sorted(taken, key=lambda r: float(r["end"])):
        firsts.setdefault(r["msg_id"], r)
    accepted_at = sorted(float(r["end"]) - t0 for r in firsts.values())
    on_time = sum(float(r["end"]) - float(r["intended"]) <= 2.0 for r in firsts.values())
    times = numpy.linspace(STEP_S / 4, STEP_S, 24)
    backlog = [sum(x < t for x in offered_at) - sum(x < t for x in accepted_at) for t in times]
    slope = float(numpy.polyfit(times, backlog, 1)[0])
    return (len(offered_at) / STEP_S, len(steady) / (0.75 * STEP_S), on_time / STEP_S,
            round(slope, 3))  # fmt: skip
