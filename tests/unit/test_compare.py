"""`maildrill compare`: differences between two runs with the direction of change."""

from __future__ import annotations

import copy
from typing import Annotated

import pytest
from pydantic import Field

from loadtest.analysis import compare
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.summary_model import HIGHER, Failover, Messages, Summary
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
    b.messages.retried = a.messages.retried + 3  # worse
    b.failovers[0].failover_s = a.failovers[0].failover_s + 1.0  # worse
    b.throughput.per_server["secondary"].mean_msgs_per_s += 1  # no sense: changed
    b.latency_ms.p50 = a.latency_ms.p50 * 1.001  # within 0.5 %: same
    rows = by_metric(compare.rows(a, b))
    assert rows[("throughput", "mean_msgs_per_s")].direction == "better"
    assert rows[("latency (ms)", "p95")].direction == "worse"
    assert rows[("messages", "duplicates")].direction == "better"
    assert rows[("messages", "retried")].direction == "worse"
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


PERCENTILES = ("p50", "p90", "p95", "p99", "max")
MESSAGES = [
    ("planned", "neutral"), ("attempted", "neutral"), ("accepted", "higher"),
    ("failed", "lower"), ("received_unique", "higher"), ("lost", "lower"),
    ("duplicates", "lower"), ("phantom", "lower"), ("stranded", "lower"),
    ("not_sent", "lower"), ("in_flight", "lower"), ("unverified", "lower"), ("retried", "lower"),
]  # fmt: skip
FAULT = ("detection_s", "failover_s", "failback_s", "recovery_s", "longest_gap_s",
         "messages_delayed", "messages_failed")  # fmt: skip
# What compare showed when its metrics were lists in compare.py (messages.retried since),
# for a drill (one fault) against a step load (capacity, no fault). A metric added to the
# model with a sense adds its row among these; none of these may go or change its sense.
DRILL_TO_STEPS = [
    *[("messages", m, sense) for m, sense in MESSAGES],
    ("throughput", "mean_msgs_per_s", "higher"),
    ("throughput", "peak_msgs_per_s", "neutral"),
    *[("throughput", f"{s} mean_msgs_per_s", "neutral") for s in ("primary", "secondary")],
    *[("latency (ms)", p, "lower") for p in PERCENTILES],
    *[("latency (ms)", f"{s} {p}", "lower")
      for s in ("primary", "secondary") for p in ("p50", "p95", "p99")],
    *[("response time (ms)", p, "lower") for p in PERCENTILES],
    *[("lateness (ms)", p, "lower") for p in PERCENTILES],
    *[("fault down on primary", key, "lower") for key in FAULT],
    ("capacity", "knee_msgs_per_s", "higher"),
    ("capacity", "max_stable_msgs_per_s", "higher"),
    ("slo", "passed (1 yes, 0 no)", "higher"),
]  # fmt: skip


def test_the_metrics_and_their_senses_are_the_models(base, tmp_path):
    _, a = base
    steps = summary_mod.write(runs.steps(tmp_path / "steps"), reports=False)
    shown = iter((r.group, r.metric, r.sense) for r in compare.rows(a, steps))
    missing = [row for row in DRILL_TO_STEPS if row not in shown]  # in order: a subsequence
    assert missing == []
    # Without a step load on either side, the capacity rows are left out.
    assert not [r for r in compare.rows(a, a) if r.group == "capacity"]


class NewMessages(Messages):
    bounced_later: Annotated[int, HIGHER] = Field(default=0, description="a new metric")


class NewFailover(Failover):
    retries_during: Annotated[float | None, HIGHER] = None


class NewSummary(Summary):
    messages: NewMessages
    failovers: list[NewFailover]


def test_a_new_metric_with_a_sense_is_compared_from_the_model_alone(base):
    """A field added to the model with a sense is a row: compare.py lists no metric."""
    _, a = base
    data = a.model_dump(mode="json")
    data["messages"]["bounced_later"] = 2
    data["failovers"][0]["retries_during"] = 1.5
    old, new = NewSummary.model_validate(a.model_dump(mode="json")), NewSummary.model_validate(data)
    rows = by_metric(compare.rows(old, new))
    assert (rows[("messages", "bounced_later")].a, rows[("messages", "bounced_later")].b) == (0, 2)
    assert rows[("messages", "bounced_later")].direction == "better"
    assert rows[("fault down on primary", "retries_during")].direction == "n/a"
    keys = list(rows)
    last = list(Messages.model_fields)[-1]  # a field added to a part is shown after its others
    assert keys.index(("messages", "bounced_later")) == keys.index(("messages", last)) + 1


def test_a_receipts_only_run_shows_no_value_where_it_could_not_count(base):
    _, a = base
    b = copy.deepcopy(a)
    b.needs_sender_journal = ["messages.lost", "failovers[].detection_s", "latency_ms"]
    rows = by_metric(compare.rows(a, b))
    for key in [("messages", "lost"), ("fault down on primary", "detection_s"),
                ("latency (ms)", "p95")]:  # fmt: skip
        assert rows[key].a is not None, key
        assert rows[key].b is None, key
        assert rows[key].direction == "n/a"
    # What receipts do count is still compared, each side its own figure.
    dup = rows[("messages", "duplicates")]
    assert (dup.a, dup.b) == (a.messages.duplicates, b.messages.duplicates)
    fo = rows[("fault down on primary", "failover_s")]
    assert (fo.a, fo.b) == (a.failovers[0].failover_s, b.failovers[0].failover_s)
