"""One step's figures from hand-made attempts with known answers; the per-step scenario;
`maildrill capacity`'s bad input (one line, exit 2, before anything starts)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from loadtest.capacity.driver import CapacityRun
from loadtest.capacity.measure import step_figures
from loadtest.capacity.search import SearchSettings
from loadtest.cli import main
from loadtest.orchestrate import prepare

T0 = 1_000_000.0


def attempts(rows: list[tuple[str, int, float, float, float, str]]) -> pd.DataFrame:
    """(msg_id, attempt, intended, start, end, outcome), times from T0."""
    frame = pd.DataFrame(rows, columns=["msg_id", "attempt", "intended", "start", "end",
                                        "outcome"])  # fmt: skip
    for column in ("intended", "start", "end"):
        frame[column] += T0
    return frame


def server(rate: float, capacity: float, duration: float, latency: float) -> pd.DataFrame:
    """A server taking one message every 1/capacity s, in order; the rest waits."""
    rows, free = [], 0.0
    for k in range(int(rate * duration)):
        intended = k / rate
        start = max(intended, free)
        free = start + 1 / capacity
        rows.append((f"m{k}", 1, intended, start, start + latency, "accepted"))
    return attempts(rows)


def test_a_server_that_keeps_up() -> None:
    f = step_figures(server(100, 200, 4, 0.01), T0, 100, 4, on_time_s=1.0)
    assert f.offered_msgs_per_s == 100
    assert f.accepted_msgs_per_s == 100
    assert f.delivered_msgs_per_s == pytest.approx(100, abs=1)  # 300 ends in [1, 4) s
    assert abs(f.backlog_growth_msgs_per_s) < 1
    assert f.p95_latency_ms == pytest.approx(10, abs=0.1)
    assert f.busy_connections == pytest.approx(1.0, abs=0.02)  # 100/s x 10 ms


def test_a_server_past_its_capacity() -> None:
    """Offered 150/s, taken 100/s: the backlog grows 50 msgs/s, delivery is 100/s."""
    f = step_figures(server(150, 100, 4, 0.01), T0, 150, 4, on_time_s=1.0)
    assert f.backlog_growth_msgs_per_s == pytest.approx(50, abs=2)
    assert f.delivered_msgs_per_s == pytest.approx(100, abs=1)
    # Message k starts at k/100 s, meant for k/150 s: it is late by half its intended
    # time, and on time (accepted within 1 s, latency 10 ms included) until 1.98 s.
    assert f.accepted_msgs_per_s == pytest.approx(150 * 1.98 / 4, abs=0.5)


def test_error_shares_count_attempts_ended_in_the_step() -> None:
    rows = [(f"m{k}", 1, k / 10, k / 10, k / 10 + 0.01, "accepted") for k in range(10)]
    rows += [("r1", 1, 0.1, 0.1, 0.11, "refused"), ("t1", 1, 0.2, 0.2, 0.5, "timeout"),
             ("d1", 1, 0.3, 0.3, 0.31, "deferred"), ("d2", 1, 0.4, 0.4, 0.41, "deferred"),
             ("late", 1, 0.5, 0.5, 1.5, "deferred")]  # fmt: skip
    f = step_figures(attempts(rows), T0, 10, 1.0, on_time_s=1.0)
    assert f.attempts == 14  # the one ended after the step is not counted
    assert f.refused_share == round(1 / 14, 4)
    assert f.timeout_share == round(1 / 14, 4)
    assert f.throttled_share == round(2 / 14, 4)
    assert f.rejected_share == 0


def test_no_attempts_is_all_backlog() -> None:
    f = step_figures(attempts([]), T0, 20, 2.0, on_time_s=1.0)
    assert f.delivered_msgs_per_s == 0
    assert f.backlog_growth_msgs_per_s == 20


def _run(scenario: str, servers: list[str]) -> CapacityRun:
    raw, parsed = prepare(Path("scenarios") / f"{scenario}.yaml", [])
    return CapacityRun(raw, parsed, scenario, Path("unused"), SearchSettings(), 2.0, servers,
                       say=lambda _: None)  # fmt: skip


def test_each_server_alone_then_all() -> None:
    run = _run("default", ["primary", "secondary"])
    assert run.curves() == [("primary", ["primary"]), ("secondary", ["secondary"]),
                            ("all", None)]  # fmt: skip


def test_a_step_is_the_scenario_cut_to_one_flat_stage() -> None:
    run = _run("primary-down", ["secondary"])
    before = copy.deepcopy(run.raw)
    data = run.step_data(["secondary"], 123.4567)
    assert data["campaign"]["schedule"] == [{"duration_s": 2.0, "rate": 123.457}]
    assert data["faults"] == []
    assert data["probe_interval_ms"] == 0
    assert data["routing"]["policy"] == "failover"
    assert data["routing"]["servers"] == ["secondary"]
    assert data["servers"] == before["servers"]  # every server still runs as configured
    assert run.raw == before  # the scenario itself is untouched
    routed = run.step_data(None, 50)
    assert routed["routing"] == before.get("routing", routed["routing"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--server", "nosuch"], "--server nosuch: no such server"),
        (["--precision", "0"], "precision"),
        (["--start-rate", "500", "--max-rate", "100"], "rates"),
        (["--step-s", "0"], "--step-s"),
        (["--max-rate", "1e9"], "--max-rate 1e+09: at most 100000"),
        (["--set", "users=-1"], "users"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["capacity", "default", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert says in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_run_directory_is_not_reused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    assert main(["capacity", "default", "--out", str(tmp_path)]) == 2
    assert "already holds a capacity run" in capsys.readouterr().err
