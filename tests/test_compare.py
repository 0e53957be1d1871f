"""`maildrill compare`: differences between two runs with the direction of change."""

from __future__ import annotations

import copy

import pytest

from loadtest.analysis import compare
from loadtest.analysis import summary as summary_mod
from loadtest.cli import main
from tests import runs


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run_dir = runs.drill(tmp_path_factory.mktemp("a") / "run")
    return run_dir, summary_mod.write(run_dir, reports=False)


def by_metric(rows):
    return {(r.group, r.metric): r for r in rows}


def test_directions_follow_each_metrics_sense(base):
    _, a = base
    b = copy.deepcopy(a)
    b.throughput.mean_msgs_per_s = a.throughput.mean_msgs_per_s * 2  # better
    b.latency_ms.p95 = a.latency_ms.p95 * 3  # worse
    b.messages.duplicates = 0  # better (was 1)
    b.failovers[0].failover_s = a.failovers[0].failover_s + 1.0  # worse
    b.throughput.per_server["secondary"].mean_msgs_per_s += 1  # no sense: changed
    b.latency_ms.p50 = a.latency_ms.p50 * 1.001  # within 0.5 %: same
    rows = by_metric(compare.rows(a, b))
    assert rows[("throughput", "mean_msgs_per_s")].direction == "better"
    assert rows[("latency (ms)", "p95")].direction == "worse"
    assert rows[("messages", "duplicates")].direction == "better"
    assert rows[("fault down on primary", "failover_s")].direction == "worse"
    assert rows[("fault down on primary", "failover_s")].delta == pytest.approx(1.0)
    assert rows[("throughput", "secondary mean_msgs_per_s")].direction == "changed"
    assert rows[("latency (ms)", "p50")].direction == "same"
    assert rows[("messages", "lost")].direction == "same"
    pct = rows[("throughput", "mean_msgs_per_s")].change_pct
    assert pct == pytest.approx(100.0)


def test_a_fault_in_one_run_only_has_no_direction(base):
    _, a = base
    b = copy.deepcopy(a)
    b.failovers = []
    row = by_metric(compare.rows(a, b))[("fault down on primary", "failover_s")]
    assert row.b is None
    assert row.direction == "n/a"
    text = compare.render("A", "B", compare.rows(a, b))
    assert "| fault down on primary | failover_s |" in text


def test_cli_prints_and_writes_compare_md(base, tmp_path, capsys):
    a_dir, a = base
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = copy.deepcopy(a)
    b.latency_ms.p99 = 1000.0
    (b_dir / "summary.json").write_text(summary_mod.as_json(b))
    assert main(["compare", str(a_dir), str(b_dir)]) == 0
    printed = capsys.readouterr().out
    written = (b_dir / "compare.md").read_text()
    assert printed == written
    assert written.startswith(f"# maildrill compare: {a_dir} -> {b_dir}")
    assert "| latency (ms) | p99 |" in written
    line = next(x for x in written.splitlines() if x.startswith("| latency (ms) | p99 |"))
    assert line.endswith("| worse |")
    out = tmp_path / "elsewhere.md"
    assert main(["compare", str(a_dir), str(b_dir), "--out", str(out)]) == 0
    assert out.read_text() == written


def test_cli_refuses_a_directory_without_a_run(base, tmp_path, capsys):
    a_dir, _ = base
    assert main(["compare", str(a_dir), str(tmp_path)]) == 2
    assert "no summary.json and no journals" in capsys.readouterr().err
