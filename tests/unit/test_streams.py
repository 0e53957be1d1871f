"""Per-stream results: a hand-built two-stream run whose answers the test counts itself,
the per-stream SLO names, the scenario's check of them, the report and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadtest.analysis import attempt_figures, compare, fail_on, slo, view
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.summary_model import STREAM_SLO_METRICS, Summary, slo_metric
from loadtest.campaign import MessageFactory, StreamSpec
from loadtest.scenario import ScenarioError, parse_scenario
from tests import runs
from tests.helpers import merge, scenario_refused

SCENARIO = """\
name: hand-streams
description: hand-built two-stream run, primary down 3 -> 5 s
servers:
  - {name: primary, priority: 10, local: true, host: 127.0.0.1, port: 2525}
  - {name: secondary, priority: 20, local: true, host: 127.0.0.1, port: 2526}
routing: {policy: failover}
campaign:
  seed: 2
  streams:
    - {name: transactional, weight: 1, priority: 10}
    - {name: promotional, weight: 3}
  schedule: [{duration_s: 10, rate: 2}]
  drain_s: 2
users: 4
faults:
  - {at: 3, target: primary, kind: down, duration: 2}
slo:
  - streams.transactional.p95_lateness_ms <= 100
  - streams.promotional.p95_lateness_ms <= 100
  - streams.promotional.lost == 0
  - streams.transactional.accepted_ratio >= 0.8
"""
PLANNED, SENT = 20, 18  # messages 18 and 19 are never attempted (not sent)
STREAMS = [StreamSpec(name="transactional", weight=1), StreamSpec(name="promotional", weight=3)]


def stream_of(k: int) -> str:
    """The stream the campaign's messages are built in (the factory's own draw)."""
    return MessageFactory(STREAMS, "x", seed=2).envelope(k)[0]


def build(run_dir: Path) -> tuple[Path, dict[str, dict[str, list]]]:
    """The run, and what the test knows of each stream as it builds it."""
    b = runs.RunBuilder("hand-streams")
    truth: dict[str, dict[str, list]] = {
        s: {"accepted": [], "failed": [], "lost": [], "duplicates": [], "latency": [],
            "response": [], "lateness": [], "delayed": []}
        for s in ("transactional", "promotional")
    }  # fmt: skip
    for k in range(SENT):
        stream = stream_of(k)
        mine = truth[stream]
        t = k * 0.5
        late = 0.4 if stream == "promotional" and 8 <= k <= 15 else 0.0  # a backlog
        start = t + late
        service = (0.010 if stream == "transactional" else 0.020) + k * 0.0001
        mine["lateness"].append(late)
        if 6 <= k <= 9:  # the primary is down from 3.0 to 5.0 s: refused, then the secondary
            b.attempt(k, "primary", t, start, start + 0.005, outcome="refused", code=None,
                      enhanced="", phase="connect", final=False, stream=stream)  # fmt: skip
            second = start + 0.005
            b.attempt(k, "secondary", t, second, second + 0.03, attempt=2, stream=stream)
            b.receipt(k, "secondary", second + 0.029)
            mine["accepted"].append(k)
            mine["delayed"].append(k)
            mine["latency"].append(0.03)
            mine["response"].append(second + 0.03 - t)
            continue
        if k == 14:  # refused for good
            b.attempt(k, "primary", t, start, start + service, outcome="rejected", code=550,
                      enhanced="5.7.1", phase="dot", stream=stream)  # fmt: skip
            mine["failed"].append(k)
            continue
        b.attempt(k, "primary", t, start, start + service, stream=stream)
        mine["accepted"].append(k)
        mine["latency"].append(service)
        mine["response"].append(start + service - t)
        if k == 13:
            mine["lost"].append(k)  # accepted, and no sink has it
            continue
        b.receipt(k, "primary", start + service - 0.001)
        if k == 12:
            b.receipt(k, "primary", start + 1.0)  # the same message twice
            mine["duplicates"].append(k)
    b.fault("primary", "down", "start", 3.0)
    b.fault("primary", "down", "stop", 5.0)
    return b.write(run_dir, SCENARIO, planned=PLANNED), truth


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Summary, dict[str, dict[str, list]]]:
    run_dir, truth = build(tmp_path_factory.mktemp("streams") / "run")
    return runs.summarised(run_dir), truth


def percentile_ms(values: list[float], p: float) -> float:
    """The p-th percentile as HdrHistogram ranks it: the value at rank round(p% of n)."""
    ordered = sorted(values)
    return 1000.0 * ordered[max(1, int(p / 100.0 * len(ordered) + 0.5)) - 1]


def test_each_stream_has_the_counts_the_test_made(built):
    summary, truth = built
    assert list(summary.streams) == ["transactional", "promotional"]  # the campaign's order
    planned = {s: sum(stream_of(k) == s for k in range(PLANNED)) for s in truth}
    for name, s in summary.streams.items():
        mine = truth[name]
        assert s.planned == planned[name]
        assert s.attempted == sum(stream_of(k) == name for k in range(SENT))
        assert s.not_sent == s.planned - s.attempted
        assert (s.accepted, s.failed) == (len(mine["accepted"]), len(mine["failed"]))
        assert (s.lost, s.duplicates) == (len(mine["lost"]), len(mine["duplicates"]))
        assert s.retried == len(mine["delayed"])
        (fault,) = s.failovers
        assert (fault.target, fault.messages_delayed) == ("primary", len(mine["delayed"]))
        assert fault.monitor_detection_s is None  # probes carry no stream
    assert summary.streams["transactional"].not_sent == 1  # message 18
    assert summary.streams["promotional"].lost == 1
    assert summary.streams["transactional"].duplicates == 1


def test_the_streams_add_up_to_the_whole_run(built):
    summary, _ = built
    m = summary.messages
    for key in ("planned", "attempted", "accepted", "failed", "lost", "duplicates",
                "not_sent", "received_unique", "retried"):  # fmt: skip
        assert sum(getattr(s, key) for s in summary.streams.values()) == getattr(m, key), key
    delayed = sum(s.failovers[0].messages_delayed for s in summary.streams.values())
    assert delayed == summary.failovers[0].messages_delayed


def test_each_stream_has_the_timings_the_test_made(built):
    summary, truth = built
    for name, s in summary.streams.items():
        mine = truth[name]
        for got, values in ((s.latency_ms, mine["latency"]), (s.response_time_ms,
                            mine["response"]), (s.lateness_ms, mine["lateness"])):  # fmt: skip
            for p in (50, 95):
                want = percentile_ms(values, p)
                assert getattr(got, f"p{p}") == pytest.approx(want, rel=2e-3, abs=0.002)
            assert got.max == pytest.approx(max(values) * 1000.0, rel=2e-3, abs=0.002)
    # The backlog was promotional's: transactional mail went on time.
    assert summary.streams["transactional"].lateness_ms.max == pytest.approx(0.0, abs=0.002)
    assert summary.streams["promotional"].lateness_ms.p95 == pytest.approx(400.0, rel=2e-3)


def test_slos_per_stream_are_measured_on_their_stream(built):
    summary, truth = built
    checks = {c.rule: c for c in summary.slo.checks}
    assert checks["streams.transactional.p95_lateness_ms <= 100"].passed
    late = checks["streams.promotional.p95_lateness_ms <= 100"]
    assert (late.passed, late.value) == (False, pytest.approx(400.0, rel=2e-3))
    assert checks["streams.promotional.lost == 0"].value == 1
    ratio = checks["streams.transactional.accepted_ratio >= 0.8"]
    t = summary.streams["transactional"]
    assert ratio.value == pytest.approx(len(truth["transactional"]["accepted"]) / t.planned)
    values = slo.metric_values(summary)
    assert set(STREAM_SLO_METRICS) <= {n.rsplit(".", 1)[1] for n in values if "." in n}
    assert (
        values["streams.promotional.failover_s"]
        == summary.streams["promotional"].failovers[0].failover_s
    )


def test_per_stream_slo_names_parse_generically():
    assert slo.parse_slo("streams.transactional.p95_response_time_ms <= 2000") == (
        "streams.transactional.p95_response_time_ms", "<=", 2000.0,
    )  # fmt: skip
    metric = slo_metric("streams.bulk-2.v1.lost")  # a stream's name may hold - and dots
    assert metric is not None
    assert (metric.stream, metric.path, metric.keys) == ("bulk-2.v1", "lost",
                                                         ["streams.bulk-2.v1.lost"])  # fmt: skip
    for bad in ("streams.transactional.min_throughput <= 1", "streams.lost <= 1",
                "streams..lost <= 1", "streams.x.nonsense <= 1"):  # fmt: skip
        with pytest.raises(ValueError, match=r"per stream: streams\.STREAM\.METRIC"):
            slo.parse_slo(bad)


def test_a_scenario_refuses_an_slo_on_a_stream_it_does_not_have():
    import yaml

    data = yaml.safe_load(SCENARIO)
    text = scenario_refused(
        merge(data, {"slo": ["lost == 0", "streams.transactionel.lost == 0"]}),
        "slo[1]", "transactionel", "transactional, promotional",
    )  # fmt: skip
    assert text.count("\n") == 0


def test_a_stream_name_an_slo_could_not_spell_is_refused():
    import yaml

    data = yaml.safe_load(SCENARIO)
    data["campaign"]["streams"][0]["name"] = "black friday"
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, "s.yaml")
    text = str(raised.value)
    assert "'black friday': letters, digits, '.', '-' and '_' only" in text
    assert text.count("\n") == 0


def test_a_run_with_one_stream_has_that_one(tmp_path):
    summary = runs.summarised(runs.drill(tmp_path / "run"))
    (name,) = summary.streams
    assert name == "promotional"
    one = summary.streams[name]
    assert one.model_dump(include=set(summary.messages.model_dump())) == (
        summary.messages.model_dump()
    )
    assert one.latency_ms.p95 == summary.latency_ms.p95
    assert one.response_time_ms == summary.response_time_ms
    assert one.lateness_ms == summary.lateness_ms
    assert view.streams(summary) is None  # one stream: the other tables say it all


def test_the_report_has_a_row_per_stream(built):
    summary, _ = built
    table = view.streams(summary)
    assert table is not None
    assert [row[0] for row in table.rows] == ["transactional", "promotional"]
    promo = summary.streams["promotional"]
    row = table.rows[1]
    assert row[1:7] == [str(promo.planned), str(promo.accepted), str(promo.failed),
                        str(promo.lost), str(promo.duplicates), str(promo.not_sent)]  # fmt: skip
    assert row[-1] == str(promo.failovers[0].messages_delayed)
    assert "Streams" in [t.title for t in view.build(summary).sections]


def test_compare_and_fail_on_see_each_stream(built, tmp_path):
    summary, _ = built
    other = Summary.model_validate(json.loads(summary_mod.as_json(summary)))
    other.streams["transactional"].lateness_ms.p95 = 250.0
    rows = {(r.group, r.metric): r for r in compare.rows(summary, other)}
    row = rows[("streams", "transactional lateness_ms p95")]
    assert row.direction == "worse"
    assert ("streams", "promotional lost") in rows
    rule = fail_on.parse("streams.transactional.p95_lateness_ms>+100")
    verdict = fail_on.evaluate(rule, summary, other)
    assert verdict.broken
    before = summary.streams["transactional"].lateness_ms.p95
    assert verdict.measured == pytest.approx(250.0 - before)
    assert fail_on.value(other, "streams.transactional.lost") == 0


def test_without_the_senders_journal_streams_are_not_measured(tmp_path):
    """Receipts carry no stream: `streams` is empty, listed as needing the sender's
    journal, and a rule on a stream says so instead of failing on nothing."""
    from tests.unit.test_received import external

    rules = "streams.promotional.lost == 0, streams.promotional.p95_lateness_ms <= 1"
    summary = summary_mod.write(external(tmp_path / "run", rules), reports=False)
    assert summary.streams == {}
    assert "streams" in summary.needs_sender_journal
    for check in summary.slo.checks:
        assert (check.passed, check.value, check.note) == (False, None, slo.NEEDS_SENDER_NOTE)


def test_a_scenario_refuses_a_stream_without_a_name():
    """A stream is known by its name (routes, results, `streams.NAME.METRIC`): "" names
    none, and an SLO could never be written on it."""
    import yaml

    data = yaml.safe_load(SCENARIO)
    data["campaign"]["streams"][0]["name"] = ""
    data["slo"] = ["lost == 0"]
    scenario_refused(data, "name")


def test_a_journal_naming_no_stream_is_summarised(tmp_path):
    """Attempts whose stream cell is empty (another tool's journal, or one from before the
    name was checked) are a stream of their own, counted as any other; the SLOs on the
    named streams are still judged, and nothing crashes on a name no rule can spell."""
    b = runs.RunBuilder("hand-streams")
    for k in range(6):
        stream = "" if k < 2 else "promotional"
        b.attempt(k, "primary", k * 0.5, k * 0.5, k * 0.5 + 0.01, stream=stream)
        b.receipt(k, "primary", k * 0.5 + 0.009)
    scenario = SCENARIO.replace("  - streams.transactional.accepted_ratio >= 0.8\n", "")
    summary = runs.summarised(b.write(tmp_path / "run", scenario, 6))
    assert (summary.streams[""].accepted, summary.streams["promotional"].accepted) == (2, 4)
    checks = {c.rule: c for c in summary.slo.checks}
    assert checks["streams.promotional.lost == 0"].value == 0


def test_streams_each_alone_in_their_shares_keep_their_own_latency() -> None:
    """A run in partitions where one partition holds only stream a's attempts and another
    only stream b's: each stream held every attempt of the shares it was in, yet its
    latency is its own, not the run's."""
    import numpy as np

    from loadtest.analysis import metrics, streams
    from loadtest.analysis.histograms import Slots
    from loadtest.analysis.summary_model import Messages

    def stream(seconds: float) -> streams.Stream:
        times = metrics.Times(latency=Slots.of(np.array([seconds])))
        counts = Messages(**dict.fromkeys(Messages.model_fields, 0)).model_dump()
        return streams.Stream(counts=counts, times=times, every=True, seen=1)

    counted = streams.Tally(streams={"a": stream(0.010), "b": stream(0.200)})
    run_figures = attempt_figures.Part()
    run_figures.add(
        pd.DataFrame(
            {"server": ["p"], "start": [0.0], "end": [5.0], "intended": [0.0],
             "outcome": ["accepted"], "attempt": [1], "msg_id": ["m"]}
        )
    )  # fmt: skip
    figures = run_figures.result(None, 0.0, partial=False)
    made = streams.finish(counted, ["a", "b"], None, 2, [], lambda w, t: None, figures)  # type: ignore[arg-type, return-value]
    assert made["a"].latency_ms.max == pytest.approx(10.0, rel=0.002)
    assert made["b"].latency_ms.max == pytest.approx(200.0, rel=0.002)
    alone = streams.finish(
        streams.Tally(streams={"a": stream(0.010)}),
        ["a"],
        None,
        1,
        [],
        lambda w, t: None,
        figures,  # type: ignore[arg-type, return-value]
    )
    assert alone["a"].latency_ms.max == figures.latency.max  # the run's own figures
