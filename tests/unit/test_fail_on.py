"""`maildrill compare A B --fail-on RULE`: the rules parsed, evaluated (a value of B, a
change, a change in %), their edge cases, and the exit code on two hand-built runs."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from loadtest.analysis import fail_on
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Percentiles, Summary
from loadtest.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SLO_FAILED, main
from tests import runs
from tests.helpers import read_csv


@pytest.fixture(scope="module")
def drill_dir(tmp_path_factory) -> Path:
    return runs.drill(tmp_path_factory.mktemp("a") / "run")


@pytest.fixture(scope="module")
def steps_dir(tmp_path_factory) -> Path:
    return runs.steps(tmp_path_factory.mktemp("b") / "run")


@pytest.fixture(scope="module")
def a(drill_dir) -> Summary:
    return summary_mod.summarise(RunDir.load(drill_dir))


@pytest.mark.parametrize(
    ("text", "metric", "op", "limit", "change"),
    [
        ("lost>0", "lost", ">", 0.0, "value"),
        ("  lost > 0 ", "lost", ">", 0.0, "value"),
        ("p95_latency_ms>+10%", "p95_latency_ms", ">", 10.0, "percent"),
        ("min_throughput < -5 %", "min_throughput", "<", -5.0, "percent"),
        ("failover_s>=+0.5", "failover_s", ">=", 0.5, "delta"),
        ("failed>-.5", "failed", ">", -0.5, "delta"),
        ("messages.retried==3", "messages.retried", "==", 3.0, "value"),
        ("latency_ms.per_server.mx.1.p95<=+0", "latency_ms.per_server.mx.1.p95", "<=", 0.0,
         "delta"),
        ("slo.passed<1", "slo.passed", "<", 1.0, "value"),
        ("capacity.knee_msgs_per_s<-10%", "capacity.knee_msgs_per_s", "<", -10.0, "percent"),
    ],
)  # fmt: skip
def test_rules_parse(text, metric, op, limit, change):
    rule = fail_on.parse(text)
    assert (rule.metric, rule.op, rule.limit, rule.change) == (metric, op, limit, change)
    assert rule.text == text.strip()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("lost", "is not METRIC OP LIMIT"),
        ("lost=0", "is not METRIC OP LIMIT"),
        ("lost!=0", "is not METRIC OP LIMIT"),
        ("lost>>0", "is not METRIC OP LIMIT"),
        ("lost>0 and failed>0", "is not METRIC OP LIMIT"),
        ("lost>nan", "is not METRIC OP LIMIT"),
        ("lost>1e400", "is not METRIC OP LIMIT"),
        ("lost>+-1", "is not METRIC OP LIMIT"),
        ("lost>1%%", "is not METRIC OP LIMIT"),
        ("p95_latency_ms>10%", "a % is a change from A: write +10% or -10%"),
        ("lots>0", "unknown metric 'lots'"),
        ("messages>0", "unknown metric 'messages'"),  # a part, not a number
        ("messages.lost.x>0", "unknown metric"),
        ("failovers.0.failover_s>0", "unknown metric"),  # lists: failover_s is the worst
        ("scenario>0", "unknown metric"),  # text
        ("latency_ms.per_server>0", "unknown metric"),  # a map, no key
        (f"lost>{'9' * 400}", "the limit"),
    ],
)
def test_bad_rules_say_why_in_one_line(text, why):
    with pytest.raises(ValueError, match=r".") as caught:
        fail_on.parse(text)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message


def test_the_value_of_a_metric(a):
    assert fail_on.value(a, "lost") == a.messages.lost
    assert fail_on.value(a, "p95_latency_ms") == a.latency_ms.p95
    assert fail_on.value(a, "failover_s") == max(f.failover_s for f in a.failovers)
    assert fail_on.value(a, "messages.retried") == a.messages.retried
    assert fail_on.value(a, "latency_ms.per_server.secondary.p95") == (
        a.latency_ms.per_server["secondary"].p95
    )
    assert fail_on.value(a, "latency_ms.per_server.nowhere.p95") is None
    assert fail_on.value(a, "slo.passed") == 0.0
    assert fail_on.value(a, "capacity.knee_msgs_per_s") is None  # not a step load


def test_a_map_key_with_dots_is_found_whole(a):
    b = copy.deepcopy(a)
    b.latency_ms.per_server = {"mx": Percentiles(p95=1.0), "mx.1": Percentiles(p95=2.0)}
    assert fail_on.value(b, "latency_ms.per_server.mx.1.p95") == 2.0
    assert fail_on.value(b, "latency_ms.per_server.mx.p95") == 1.0


def verdict(text: str, a: Summary, b: Summary) -> fail_on.Verdict:
    return fail_on.evaluate(fail_on.parse(text), a, b)


def test_absolute_rules_look_at_b_only(a):
    b = copy.deepcopy(a)
    b.messages.lost = 2
    assert verdict("lost>0", a, b).broken
    assert verdict("lost>0", a, b).measured == 2
    assert not verdict("lost>2", a, b).broken  # at the limit: > does not hold
    assert verdict("lost>=2", a, b).broken
    assert not verdict("lost>0", b, a).broken  # B (here a) has none


def test_changes_absolute_and_relative(a):
    b = copy.deepcopy(a)
    b.latency_ms.p95 = a.latency_ms.p95 * 1.25
    rise = verdict("p95_latency_ms>+10%", a, b)
    assert rise.broken
    assert rise.measured == pytest.approx(25.0)
    assert not verdict("p95_latency_ms>+25.1%", a, b).broken
    assert not verdict("p95_latency_ms>+10%", b, a).broken  # B is faster: a fall of 20 %
    assert verdict("p95_latency_ms<-19.9%", b, a).broken
    assert verdict("p95_latency_ms<-19.9%", b, a).measured == pytest.approx(-20.0)
    b.messages.failed = a.messages.failed + 3
    assert verdict("failed>+2", a, b).measured == 3
    assert verdict("failed>+2", a, b).broken
    assert not verdict("failed>+3", a, b).broken


def test_a_relative_change_from_zero(a):
    assert a.messages.lost == 0
    same = verdict("lost>+10%", a, a)
    assert (same.measured, same.broken) == (0.0, False)
    b = copy.deepcopy(a)
    b.messages.lost = 1
    rise = verdict("lost>+10%", a, b)
    assert rise.measured == math.inf
    assert rise.broken
    assert not verdict("lost<-10%", a, b).broken
    fall = verdict("lost<-10%", b, a)  # from 1 to 0: -100 %, no division by zero
    assert fall.measured == pytest.approx(-100.0)
    assert fall.broken
    assert fail_on.change(0.0, -2.0, "percent") == -math.inf
    assert "+inf %" in fail_on.render([rise])


def test_a_metric_missing_in_one_run_breaks_the_rule(a):
    b = copy.deepcopy(a)
    b.failovers = []
    for text, where in (("failover_s>+1", "run B"), ("failover_s>5", "run B")):
        v = verdict(text, a, b)
        assert v.broken
        assert v.measured is None
        assert where in v.note
    v = verdict("failover_s>+1", b, a)
    assert (v.broken, v.note) == (True, "not measured in run A: cannot be checked")
    assert not verdict("failover_s>5", b, a).broken  # an absolute rule needs only B
    v = verdict("failover_s>+1", b, b)
    assert (v.broken, v.note) == (True, "not measured in either run: cannot be checked")


def test_render_lists_each_rule_and_its_verdict(a):
    b = copy.deepcopy(a)
    b.messages.lost = 4
    verdicts = fail_on.check([fail_on.parse("lost>0"), fail_on.parse("failed>+5")], a, b)
    text = fail_on.render(verdicts)
    assert "1 of 2 broken" in text
    assert "| lost>0 | 0 | 4 | 4 | BROKEN |  |" in text
    assert f"| failed>+5 | {a.messages.failed} | {a.messages.failed} | 0 | ok |  |" in text
    assert fail_on.summary_line(verdicts) == "compare: 1 of 2 --fail-on rules broken: lost>0"


def failed_messages(run_dir: Path) -> int:
    """Messages whose final attempt was not accepted, counted from attempts.csv alone."""
    final = {r["msg_id"]: r["outcome"] for r in read_csv(run_dir / "attempts.csv")}
    return sum(1 for outcome in final.values() if outcome != "accepted")


def test_cli_exits_1_when_a_rule_breaks_and_0_when_none_does(
    drill_dir, steps_dir, tmp_path, capsys
):
    """Two real run directories (journals, no summary.json): the drill (1 failed message)
    and the step load (every 10th message at 40 msgs/s rejected: 20 failed)."""
    grown = failed_messages(steps_dir) - failed_messages(drill_dir)
    assert grown == 19
    out = tmp_path / "compare.md"
    base = ["compare", str(drill_dir), str(steps_dir), "--out", str(out)]
    assert main([*base, "--fail-on", f"failed>+{grown - 1}", "--fail-on", "lost>0"]) == (
        EXIT_SLO_FAILED
    )
    captured = capsys.readouterr()
    assert f"| failed>+{grown - 1} | 1 | 20 | +{grown} | BROKEN |" in captured.out
    assert "| lost>0 | 0 | 0 | 0 | ok |" in captured.out
    assert out.read_text() == captured.out
    assert f"1 of 2 --fail-on rules broken: failed>+{grown - 1}" in captured.err
    assert main([*base, "--fail-on", f"failed>+{grown}", "--fail-on", "lost>0"]) == EXIT_OK
    assert "every --fail-on rule held (2)" in capsys.readouterr().err
    assert main(base) == EXIT_OK  # no rules: as before
    assert "--fail-on" not in capsys.readouterr().out


def test_cli_refuses_a_bad_rule_in_one_line_before_reading_the_runs(drill_dir, tmp_path, capsys):
    code = main(["compare", str(drill_dir), str(tmp_path / "nothing"), "--fail-on", "lost>5%"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("maildrill: compare: --fail-on 'lost>5%': a % is a change from A")


def test_a_value_the_run_could_not_measure_breaks_the_rule(a, drill_dir, tmp_path, capsys):
    """A run without the sender's journal (`maildrill sinks` and another sender) reads 0
    for what it cannot count (`needs_sender_journal`): a gate on one cannot look, so it
    breaks, as a metric missing from a run does; what the receipts measure is judged.
    Such a directory is compared from its journals as `maildrill report` reads it."""
    from tests.unit.test_received import external

    sinks = external(tmp_path / "sinks", "duplicates == 0")
    b = summary_mod.summarise(RunDir.load(sinks))
    assert b.messages.lost == 0
    assert "messages.lost" in b.needs_sender_journal
    for text in ("lost>0", "messages.lost>0", "p95_latency_ms>+10%",
                 "throughput.peak_msgs_per_s<1", "streams.promotional.lost>0",
                 "hard_bounces>0"):  # fmt: skip
        v = verdict(text, a, b)
        assert (v.broken, v.b, v.note) == (True, None, "not measured in run B: cannot be checked")
    assert not verdict("duplicates>5", a, b).broken  # counted from the receipts
    out = tmp_path / "compare.md"
    base = ["compare", str(drill_dir), str(sinks), "--out", str(out)]
    assert main([*base, "--fail-on", "lost>0"]) == EXIT_SLO_FAILED
    assert "1 of 1 --fail-on rules broken: lost>0" in capsys.readouterr().err
