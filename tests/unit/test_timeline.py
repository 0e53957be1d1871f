"""The fault timeline (loadtest.timeline), pure: from a scenario to typed events in the
order they fall due, and what the drill records of them. No sockets, no processes."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.scenario import Scenario, parse_scenario, read_yaml
from loadtest.timeline import MtaRestart, MtaStop, SinkFault, Timeline, plan
from sinks.config import FaultSpec
from sinks.control_client import fault_body
from tests.helpers import REPO

SCENARIOS = REPO / "scenarios"


def scenario(name: str, faults: list[dict[str, Any]]) -> Scenario:
    raw = read_yaml(SCENARIOS / f"{name}.yaml")
    raw["faults"] = faults
    return parse_scenario(raw, name)


def shape(timeline: Timeline) -> list[tuple[str, float, str, str]]:
    return [(type(p.event).__name__, p.event.at, p.event.target, p.event.kind)
            for p in timeline.entries]  # fmt: skip


def send_ahead(timeline: Timeline) -> None:
    """What a drill does at t0: every sink's fault sent ahead (ids as a sink gives them)."""
    for n, planned in enumerate(timeline.sink_faults(), 1):
        planned.scheduled(f"{planned.event.kind}-{n}", 0.0)


def started(timeline: Timeline, elapsed: float) -> list[str]:
    """What a drill asks at `elapsed` s: each sink's fault due says it started then."""
    asked = []
    for planned in timeline.unsettled(elapsed):
        assert planned.settle("active", 1000.0 + elapsed) is None
        asked.append(f"{planned.event.kind}@{planned.event.target}")
    return asked


def carry_out(timeline: Timeline, elapsed: float) -> list[str]:
    """What a drill does at `elapsed` s: every due MTA event tried, and done."""
    tried = []
    for planned in timeline.due(elapsed):
        planned.sent_at = elapsed
        planned.done = True
        planned.status = "done"
        tried.append(f"{planned.event.kind}@{planned.event.target}")
    return tried


def test_events_fall_due_in_time_order_ties_in_scenario_order():
    timeline = plan(scenario("default", [
        {"at": 9, "target": "secondary", "kind": "drop", "duration": 1},
        {"at": 2, "target": "primary", "kind": "busy", "duration": 1},
        {"at": 5, "target": "secondary", "kind": "reject", "stage": "rcpt", "code": 550},
        {"at": 5, "target": "primary", "kind": "greylist"},
    ]))  # fmt: skip
    assert shape(timeline) == [
        ("SinkFault", 2, "primary", "busy"),
        ("SinkFault", 5, "secondary", "reject"),
        ("SinkFault", 5, "primary", "greylist"),
        ("SinkFault", 9, "secondary", "drop"),
    ]
    assert carry_out(timeline, 60) == [], "a sink's faults go ahead, none is carried out"
    assert started(timeline, 60) == [], "nor asked about before it was sent"
    send_ahead(timeline)
    assert [p.status for p in timeline.sink_faults()] == [
        "scheduled busy-1", "scheduled reject-2", "scheduled greylist-3", "scheduled drop-4"
    ]  # fmt: skip
    assert started(timeline, 1.9) == []
    assert started(timeline, 5.0) == ["busy@primary", "reject@secondary", "greylist@primary"]
    assert started(timeline, 5.1) == [], "a fault seen started is asked about once"
    assert started(timeline, 60) == ["drop@secondary"]
    assert [p.status for p in timeline.sink_faults()][:1] == ["started busy-1"]


def test_what_a_sink_says_of_a_fault_settles_it_or_fails_it():
    timeline = plan(scenario("default", [
        {"at": 2, "target": "primary", "kind": "busy", "duration": 1},
        {"at": 3, "target": "primary", "kind": "drop", "duration": 1},
    ]))  # fmt: skip
    send_ahead(timeline)
    busy, drop = timeline.sink_faults()
    assert busy.settle("pending", None) is None, "not yet: ask again"
    assert (busy.done, busy.status, busy.started_at) == (False, "scheduled busy-1", None)
    assert busy.settle("ended", 1002.004) is None, "a short fault may be over when asked"
    assert (busy.done, busy.status, busy.started_at) == (True, "started busy-1", 1002.004)
    assert drop.settle("cancelled", None) == "cancelled on the sink before its time"
    assert drop.settle("failed: no listener", None) == "the sink could not start it: no listener"
    assert drop.settle("unknown: timed out", None) == "the sink says it is unknown: timed out"
    assert not drop.done
    assert timeline.records() == [
        {"at_s": 2, "target": "primary", "kind": "busy", "status": "started busy-1",
         "started_at": 1002.004},
        {"at_s": 3, "target": "primary", "kind": "drop", "status": "scheduled drop-2"},
    ]  # fmt: skip
    assert timeline.not_started() is drop


def test_a_sink_fault_is_the_spec_the_sink_validates_and_ends_itself():
    """One form from scenario to sink: its duration goes with it (the sink stops it), its
    `at` stays with the drill."""
    (planned,) = plan(scenario("default", [
        {"at": 2, "target": "primary", "kind": "latency", "ms": 300, "duration": 1.5,
         "probability": 0.5},
    ])).entries  # fmt: skip
    event = planned.event
    assert isinstance(event, SinkFault)
    assert isinstance(event.spec, FaultSpec)
    assert (event.kind, event.duration, event.spec.params) == ("latency", 1.5, {"ms": 300})
    assert fault_body(event.spec) == {
        "kind": "latency", "probability": 0.5, "ms": 300, "duration": 1.5
    }  # fmt: skip


def test_a_proxy_fault_is_checked_against_the_proxy_kinds():
    (planned,) = plan(scenario("proxy-primary", [
        {"at": 3, "target": "primary", "kind": "bandwidth", "rate": 1000,
         "direction": "downstream"},
    ])).entries  # fmt: skip
    assert isinstance(planned.event, SinkFault)
    assert planned.event.spec.kind == "bandwidth"


def test_an_mta_stop_with_a_duration_is_a_stop_then_a_restart():
    timeline = plan(scenario("postfix-pair", [
        {"at": 6, "target": "secondary", "kind": "mta-abort", "duration": 1},
        {"at": 2, "target": "primary", "kind": "mta-stop", "duration": 5},
        {"at": 7, "target": "gmail-mx", "kind": "down"},
        {"at": 8, "target": "primary", "kind": "mta-stop"},
    ]))  # fmt: skip
    assert shape(timeline) == [
        ("MtaStop", 2, "primary", "mta-stop"),
        ("MtaStop", 6, "secondary", "mta-abort"),
        ("SinkFault", 7, "gmail-mx", "down"),
        ("MtaRestart", 7, "primary", "mta-start"),  # after a fault due at the same moment
        ("MtaRestart", 7, "secondary", "mta-start"),
        ("MtaStop", 8, "primary", "mta-stop"),  # no duration: no restart
    ]
    stops = [p.event for p in timeline.entries if isinstance(p.event, MtaStop)]
    restarts = [p.event for p in timeline.entries if isinstance(p.event, MtaRestart)]
    assert [r.ends for r in restarts] == stops[:2], "each restart ends its own stop"
    assert [s.how for s in stops] == ["stop", "abort", "stop"]
    # Ids as the drill has always written them in faults-NAME.csv: the entries of the
    # harness record's list (4 faults, then the restarts planned so far) at the stop.
    assert [s.fault_id for s in stops] == ["mta-stop-4", "mta-abort-5", "mta-stop-6"]


def test_a_restart_waits_for_its_stop_and_is_recorded_once_the_stop_was_done():
    timeline = plan(scenario("postfix-pair", [
        {"at": 2, "target": "primary", "kind": "mta-stop", "duration": 3},
    ]))  # fmt: skip
    stop, _ = timeline.entries
    assert [p.event.kind for p in timeline.due(10)] == ["mta-stop"], "restart not armed"
    assert timeline.records() == [
        {"at_s": 2, "target": "primary", "kind": "mta-stop", "status": "pending"}
    ]
    stop.sent_at, stop.done, stop.status = 2.0, True, "mta-stop done"
    assert list(timeline.due(4.9)) == []
    assert [p.event.kind for p in timeline.due(5)] == ["mta-start"]
    assert [r["kind"] for r in timeline.records()] == ["mta-stop", "mta-start"]
    assert timeline.records()[1]["status"] == "pending"


def test_not_started_active_and_the_harness_record():
    timeline = plan(scenario("postfix-pair", [
        {"at": 2, "target": "primary", "kind": "mta-stop", "duration": 3},
        {"at": 3, "target": "gmail-mx", "kind": "reject", "stage": "rcpt", "code": 550,
         "duration": 4},
        {"at": 30, "target": "secondary", "kind": "mta-abort"},
    ]))  # fmt: skip
    send_ahead(timeline)
    assert carry_out(timeline, 3.5) == ["mta-stop@primary"]
    assert started(timeline, 3.5) == ["reject@gmail-mx"]
    assert [f"{p.event.kind}" for p in timeline.active(3.5)] == ["mta-stop", "reject"]
    assert carry_out(timeline, 6) == ["mta-start@primary"]
    assert [p.event.kind for p in timeline.active(6)] == ["reject"], "a restart is no fault"
    assert [p.event.kind for p in timeline.active(7)] == []
    missed = timeline.not_started()
    assert missed is not None
    assert missed.event.kind == "mta-abort"
    # The scenario's faults by time, then the restarts of the stops carried out.
    assert [(r["kind"], r["at_s"]) for r in timeline.records()] == [
        ("mta-stop", 2), ("reject", 3), ("mta-abort", 30), ("mta-start", 5)
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["default", "postfix-pair"])
def test_no_faults_no_events(name):
    timeline = plan(scenario(name, []))
    assert timeline.entries == []
    assert timeline.records() == []
    assert timeline.not_started() is None
