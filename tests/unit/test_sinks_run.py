"""`maildrill sinks`' pure parts (loadtest.sinks_run): --start-at read and refused, and the
harness record built from what the sinks said of each fault. No sockets, no processes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from loadtest.cli import _sinks_exit_code
from loadtest.runlog import RunLog
from loadtest.scenario import parse_scenario, read_yaml
from loadtest.sinks_run import harness, parse_start_at, settle, sink_timeline
from loadtest.timeline import plan
from tests.helpers import REPO

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1800000060", NOW + 60),
        ("1800000060.5", NOW + 60.5),
        ("2027-01-15T08:01:00+00:00", NOW + 60),
        ("2027-01-15T08:01:00Z", NOW + 60),
        ("2027-01-15T09:01:00+01:00", NOW + 60),
    ],
)
def test_start_at_is_epoch_seconds_or_iso_8601(text, expected):
    assert parse_start_at(text, NOW) == expected


def test_an_iso_time_without_offset_is_local_time():
    local = datetime.datetime.fromtimestamp(NOW + 90).replace(microsecond=0)
    assert parse_start_at(local.isoformat(), NOW) == local.timestamp()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1799999999", "1 s in the past"),
        (str(NOW), "0 s in the past"),
        ("2001-01-01T00:00:00+00:00", "in the past"),
        (str(NOW + 86401), "at most a day"),
        ("soon", "not epoch seconds nor an ISO-8601 time"),
        ("nan", "not a finite number"),
        ("1e400", "not a finite number"),
    ],
)
def test_a_start_at_past_far_or_unreadable_is_refused_in_one_line(text, words):
    with pytest.raises(ValueError, match=words) as refused:
        parse_start_at(text, NOW)
    assert "\n" not in str(refused.value)


def scenario(faults: list[dict[str, Any]], name: str = "default") -> Any:
    raw = read_yaml(REPO / "scenarios" / f"{name}.yaml")
    raw["faults"] = faults
    return parse_scenario(raw, name)


FAULTS = [
    {"at": 2, "target": "primary", "kind": "down", "duration": 1},
    {"at": 5, "target": "secondary", "kind": "reject", "stage": "mail", "code": 451},
    {"at": 8, "target": "primary", "kind": "drop", "duration": 1},
]


def told(sink: str, at: float, fault_id: str, state: str, started: float | None) -> dict[str, Any]:
    return {"sink": sink, "at": at, "id": fault_id, "state": state,
            "start_at": NOW + at, "started": started}  # fmt: skip


def test_each_sink_plays_its_own_faults_in_order():
    by_sink = sink_timeline(plan(scenario(FAULTS)))
    assert {k: [(s.kind, s.at) for s in v] for k, v in by_sink.items()} == {
        "primary": [("down", 2), ("drop", 8)],
        "secondary": [("reject", 5)],
    }


def test_the_harness_record_says_which_faults_started(tmp_path):
    timeline = plan(scenario(FAULTS))
    settle(timeline, [
        told("primary", 2, "down-1", "ended", NOW + 2.0004),
        told("primary", 8, "drop-2", "active", NOW + 8.0002),
        told("secondary", 5, "reject-1", "ended", NOW + 5.0001),
    ])  # fmt: skip
    record = harness(timeline, NOW, {"stopped_by": "SIGINT"}, RunLog(), tmp_path)
    assert (record["sender"], record["t0"], record["partial"]) == ("external", NOW, False)
    assert (record["interrupted_by"], record["aborted_by"], record["stopped_by"]) == (
        None, None, "SIGINT"
    )  # fmt: skip
    assert [(f["kind"], f["status"], f["started_at"]) for f in record["faults"]] == [
        ("down", "started down-1", NOW + 2.0004),
        ("reject", "started reject-1", NOW + 5.0001),
        ("drop", "started drop-2", NOW + 8.0002),
    ]
    assert record["journals"] == {}
    assert record["locust_exit_code"] is None


def test_stopped_before_a_fault_or_a_fault_failed_is_partial(tmp_path):
    timeline = plan(scenario(FAULTS))
    settle(timeline, [
        told("primary", 2, "down-1", "ended", NOW + 2.0004),
        told("primary", 8, "drop-2", "pending", None),
        told("secondary", 5, "reject-1", "ended", NOW + 5.0001),
    ])  # fmt: skip
    record = harness(timeline, NOW, {"stopped_by": "SIGINT"}, RunLog(), tmp_path)
    assert (record["partial"], record["interrupted_by"]) == (True, "SIGINT")
    assert record["faults"][2]["status"] == "scheduled drop-2"

    timeline = plan(scenario(FAULTS))
    settle(timeline, [
        told("primary", 2, "down-1", "failed: address in use", None),
        told("primary", 8, "drop-2", "ended", NOW + 8.0002),
        told("secondary", 5, "reject-1", "ended", NOW + 5.0001),
    ])  # fmt: skip
    record = harness(timeline, NOW, {"stopped_by": "SIGTERM"}, RunLog(), tmp_path)
    assert (record["partial"], record["interrupted_by"]) == (True, None)
    assert record["aborted_by"] == (
        "fault down on primary at 2 s did not start: "
        "failed: the sink could not start it: address in use"
    )


def test_the_exit_code_says_whether_the_faults_ran_as_written(tmp_path, capsys):
    """0 for a timeline played whole; 2 (one line) for a fault that failed on its sink;
    3 for a partial run: stopped before a fault's time, or a sink that died."""
    played = [
        told("primary", 2, "down-1", "ended", NOW + 2.0004),
        told("primary", 8, "drop-2", "ended", NOW + 8.0002),
        told("secondary", 5, "reject-1", "ended", NOW + 5.0001),
    ]

    def code(states: list[dict[str, Any]], final: dict[str, Any]) -> tuple[int, str]:
        timeline = plan(scenario(FAULTS))
        settle(timeline, states)
        record = harness(timeline, NOW, final, RunLog(), tmp_path)
        exit_code = _sinks_exit_code(record, tmp_path)
        return exit_code, capsys.readouterr().err

    assert code(played, {"stopped_by": "SIGINT"}) == (0, "")
    failed = [told("primary", 2, "down-1", "failed: address in use", None), *played[1:]]
    exit_code, err = code(failed, {"stopped_by": "SIGTERM"})
    assert (exit_code, err.count("\n")) == (2, 1)
    assert "fault down on primary at 2 s did not start" in err
    early = [*played[:2], told("secondary", 5, "reject-1", "pending", None)]
    exit_code, err = code(early, {"stopped_by": "SIGINT"})
    assert (exit_code, err.count("\n")) == (3, 1)
    assert "stopped by SIGINT before a fault's time" in err
    died = {"stopped_by": None, "errors": ["sink 'primary': worker 1 exited with -9"]}
    exit_code, err = code(played, died)
    assert (exit_code, err.count("\n")) == (3, 1)
    assert "worker 1 exited with -9" in err
