"""`maildrill plan` end to end, in process: plan.yaml and run directories in, plan.json,
plan.md and plan.png out; exit 0 met, 1 missed, 2 bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from loadtest import cli
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary import summarise
from loadtest.plan.result import Plan
from tests import runs

HAND = {
    "campaign": {
        "messages": 360_000,
        "window_h": 1,
        "streams": [
            {"name": "transactional", "share": 0.1, "priority": 10},
            {"name": "promotional", "share": 0.9},
        ],
    },
    "capacity": {"servers": {"primary": 90, "secondary": 60}},
    "outage": {"server": "primary", "at": "30m", "duration": "10m"},
    "headroom": 0.2,
}


def write_plan(tmp_path: Path, data: object, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def plan(tmp_path: Path, *args: str) -> tuple[int, Plan | None]:
    out = tmp_path / "out"
    code = cli.main(["plan", *args, "--out", str(out)])
    found = out / "plan.json"
    return code, Plan.model_validate_json(found.read_text()) if found.exists() else None


def test_a_plan_that_holds_exits_0_and_writes_json_markdown_and_plot(tmp_path, capsys):
    code, p = plan(tmp_path, str(write_plan(tmp_path, HAND)))
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert p is not None
    assert p.met
    assert p.extra is None
    assert p.peak_backlog == 24_000  # (100 - 60) * 600, as in test_plan_model
    assert p.peak_backlog_at_s == 2400
    assert p.drained_at_s == pytest.approx(2880, abs=1)
    assert p.streams["transactional"].lateness_s.max == 0
    assert p.streams["promotional"].lateness_s.max == pytest.approx(266.7, abs=1)
    assert [(x.from_s, x.msgs_per_s) for x in p.deliverable] == [(0, 150), (1800, 60), (2400, 150)]
    assert p.servers["primary"].source == "given by hand"
    assert p.outage is not None
    assert (p.outage.deliverable_msgs_per_s, p.outage.peak_offered_msgs_per_s) == (60, 100)
    assert "the servers left cannot carry it, 60 msgs/s against up to 100 offered" in out
    md = (tmp_path / "out" / "plan.md").read_text()
    assert "**MET" in md
    assert "| peak backlog | 24,000 messages at 0:40:00 (2400 s) |" in md
    assert (tmp_path / "out" / "plan.png").read_bytes().startswith(b"\x89PNG")
    assert "backlog: peak 24,000 messages at 0:40:00 (2400 s)" in out
    assert out.strip().endswith("with the headroom asked for")


def test_a_missed_plan_exits_1_and_says_what_would_meet_it(tmp_path, capsys):
    path = write_plan(tmp_path, HAND)
    # The outage from 20 to 50 min: 17.5 msgs/s more meets the hour (test_plan_model).
    code, p = plan(tmp_path, str(path), "--set", "outage.at=20m", "--set", "outage.duration=30m")
    out = capsys.readouterr().out
    assert code == cli.EXIT_SLO_FAILED
    assert p is not None
    assert not p.deadline_met
    assert p.headroom_met
    assert p.extra is not None
    assert p.extra.msgs_per_s == pytest.approx(17.5, rel=2e-3)
    assert p.extra.servers == {"primary": 1, "secondary": 1}
    assert p.extra.completion_s is not None
    assert p.extra.completion_s <= 3600
    assert "to meet it: 17.5" in out
    assert "## What would meet it" in (tmp_path / "out" / "plan.md").read_text()


def test_every_key_can_come_from_flags_alone(tmp_path):
    code, p = plan(
        tmp_path, "--set", "campaign.messages=36000", "--set", "campaign.window_h=1",
        "--capacity", "primary=20", "--set", "headroom=0",
    )  # fmt: skip
    assert code == cli.EXIT_OK
    assert p is not None
    assert p.peak_offered_msgs_per_s == 10
    assert p.servers["primary"].headroom == pytest.approx(0.5)


def test_capacity_and_failover_timings_come_from_run_directories(tmp_path):
    steps = runs.steps(tmp_path / "steps")  # knee 30, max stable 36 msgs/s (tests/runs.py)
    drill = runs.drill(tmp_path / "drill")
    measured = summarise(RunDir.load(drill)).failovers[0]
    data = {
        "campaign": {"messages": 100_000, "window_h": 1},
        "capacity": {"from": {"primary": str(steps)}, "servers": {"secondary": 10}},
        "failover": {"from": str(drill)},
        "outage": {"server": "primary", "at": "peak", "duration": 60},
        "headroom": 0.1,
    }
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert p is not None
    assert p.servers["primary"].capacity_msgs_per_s == 36
    assert "max stable rate of its step load" in p.servers["primary"].source
    assert (p.failover.detection_s, p.failover.failover_s, p.failover.failback_s) == (
        measured.detection_s, measured.failover_s, measured.failback_s,
    )  # fmt: skip
    assert str(drill) in p.failover.source
    assert p.outage is not None
    assert p.outage.at_s == 1800  # a flat campaign's peak: its middle
    # 27.8 msgs/s offered, 46 deliverable, 10 during the outage: met
    assert code == cli.EXIT_OK


def test_a_list_of_run_directories_names_each_by_the_server_that_accepted_its_mail(tmp_path):
    steps = runs.steps(tmp_path / "steps")
    data = {"campaign": {"messages": 36_000, "window_h": 1}, "capacity": {"from": [str(steps)]}}
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    assert list(p.servers) == ["primary"]


def capacity_dir(path: Path) -> Path:
    """A `maildrill capacity` directory as its model writes it: two server curves (the
    primary's max stable rate 480, the secondary's knee only: 150) and `all`."""
    from loadtest.capacity import model
    from tests.unit.test_capacity_report import made

    def curve(name: str, knee: float | None, stable: float | None) -> model.Curve:
        return model.Curve(name=name, servers=[name], knee_msgs_per_s=knee,
                           first_unstable_msgs_per_s=None, max_stable_msgs_per_s=stable,
                           failure=None, ending="converged")  # fmt: skip

    curves = [curve("primary", 500, 480), curve("secondary", 150, None), curve("all", 620, 600)]
    path.mkdir()
    (path / model.FILE).write_text(made().model_copy(update={"curves": curves}).model_dump_json())
    return path


def test_a_capacity_run_gives_each_server_curve_not_the_curve_of_all(tmp_path):
    measured = capacity_dir(tmp_path / "cap")
    data = {"campaign": {"messages": 36_000, "window_h": 1},
            "capacity": {"from": [str(measured)]}}  # fmt: skip
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    rates = {n: s.capacity_msgs_per_s for n, s in p.servers.items()}
    assert rates == {"primary": 480, "secondary": 150}
    assert "capacity curve" in p.servers["primary"].source
    data["capacity"] = {"from": {"secondary": str(measured)}}
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert p is not None
    assert list(p.servers) == ["secondary"]
    data["capacity"] = {"from": {"backup": str(measured)}}
    assert plan(tmp_path, str(write_plan(tmp_path, data)))[0] == cli.EXIT_BAD_INPUT


def test_a_curve_the_search_did_not_close_in_on_is_a_lower_bound_or_no_rate(tmp_path, capsys):
    from loadtest.capacity import model
    from tests.unit.test_capacity_report import made

    def measured(ending: str, failure: str | None = None) -> Path:
        path = tmp_path / f"cap-{ending}-{failure}"
        curve = model.Curve(name="primary", servers=["primary"], knee_msgs_per_s=80,
                            first_unstable_msgs_per_s=None, max_stable_msgs_per_s=80,
                            failure=failure, ending=ending)  # fmt: skip
        path.mkdir()
        report = made().model_copy(update={"curves": [curve]})
        (path / model.FILE).write_text(report.model_dump_json())
        return path

    def source(path: Path) -> str:
        data = {"campaign": {"messages": 3600, "window_h": 1}, "capacity": {"from": [str(path)]}}
        code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
        assert code == cli.EXIT_OK
        assert p is not None
        return p.servers["primary"].source

    assert source(measured("converged")).endswith("max stable rate of its capacity curve")
    assert "a lower bound: stable up to the search's max rate" in source(measured("max_rate"))
    assert "the search ran out of steps" in source(measured("max_steps"))
    assert "the load generator, not the server" in source(measured("converged", "sender"))
    assert "limited the search" in source(measured("harness_bound"))
    data = {"campaign": {"messages": 3600, "window_h": 1},
            "capacity": {"from": [str(measured("min_rate"))]}}  # fmt: skip
    assert plan(tmp_path, str(write_plan(tmp_path, data)))[0] == cli.EXIT_BAD_INPUT
    assert "found no stable rate" in capsys.readouterr().err


def test_failover_over_measured_and_hand_given_servers_needs_their_order(tmp_path, capsys):
    measured = capacity_dir(tmp_path / "cap")
    data = {"campaign": {"messages": 36_000, "window_h": 1},
            "capacity": {"from": {"secondary": str(measured)}, "servers": {"primary": 400},
                         "routing": "failover"}}  # fmt: skip
    assert plan(tmp_path, str(write_plan(tmp_path, data)))[0] == cli.EXIT_BAD_INPUT
    assert "capacity.order: under failover" in capsys.readouterr().err
    data["capacity"]["order"] = ["primary", "secondary"]  # type: ignore[index]
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    assert list(p.servers) == ["primary", "secondary"]
    assert p.servers["primary"].carried_at_peak_msgs_per_s == 10  # 36,000 an hour, on the first
    assert p.servers["secondary"].carried_at_peak_msgs_per_s == 0


def test_a_scenarios_schedule_gives_the_shape_messages_and_streams(tmp_path):
    data = {
        "campaign": {"shape": "schedule", "scenario": "capacity-step"},
        "capacity": {"servers": {"primary": 2000}},
    }
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    # capacity-step: 10 s each at 60, 120, 180, 240, 300 msgs/s
    assert p.messages == 9_000
    assert p.window_s == 50
    assert p.peak_offered_msgs_per_s == 300
    assert list(p.streams) == ["promotional"]


BAD = [
    ({**HAND, "headroomm": 0.2}, "headroomm: Extra inputs are not permitted"),
    ({**HAND, "campaign": {**HAND["campaign"], "streams": [{"name": "a", "share": 0.5}]}},
     "the shares must add up to 1"),
    ({**HAND, "outage": {"server": "tertiary", "at": 0, "duration": 1}},
     "tertiary has no capacity"),
    ({**HAND, "outage": {"server": "primary", "at": "ten minutes", "duration": 1}},
     "is not a duration"),
    ({**HAND, "capacity": {"from": ["/nonexistent/run"]}}, "not a run directory"),
    ({**HAND, "capacity": {"servers": {"primary": 0}}}, "a rate must be > 0"),
    ({**HAND, "capacity": {"servers": {"primary": float("inf")}}}, "not a finite number"),
    ({**HAND, "deadline": "2026-12-05T10:00:00"}, "a date-time needs campaign.start"),
    ({"campaign": {"window_h": 1}, "capacity": {"servers": {"a": 1}}}, "messages is required"),
    ({**HAND, "campaign": {**HAND["campaign"], "end": "2026-12-05T09:00:00Z"}},
     "give window_h or end, not both"),
    ({**HAND, "campaign": {"messages": 1, "start": "2026-12-05T09:00:00Z",
                           "end": "2026-12-05T08:00:00Z"}}, "end must be after start"),
    ({**HAND, "failover": {"detection_s": 10, "failover_s": 5}}, "counts from the onset"),
    ({**HAND, "step_s": 600}, "too coarse for a 3600 s window"),
    ([1, 2], "expected a mapping at the top"),
    ({**HAND, "campaign": {**HAND["campaign"], "window_h": 1e15}}, "less than or equal to 744"),
    ({**HAND, "campaign": {"messages": 1, "start": "2026-12-05T09:00:00Z", "window_h": 1},
      "deadline": "2026-12-05T08:00:00Z"}, "deadline: 2026-12-05T08:00:00+00:00 is before"),
    ({**HAND, "deadline": "800h"}, "2.88e+06 s is out of range (0 to 2.6784e+06 s, 31 days)"),
    ({**HAND, "capacity": {**HAND["capacity"], "routing": "failover", "order": ["primary"]}},
     "capacity.order: ['primary'] must name each server once"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, data, message):
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT, err
    assert p is None
    assert err.startswith("maildrill: plan: ")
    assert err.count("\n") == 1
    assert message in err


def test_bad_flags_and_files_are_one_line_and_exit_2(tmp_path, capsys):
    cases = [
        ["plan"],
        ["plan", "--set", "headroom=0.1"],
        ["plan", str(tmp_path / "missing.yaml")],
        ["plan", str(write_plan(tmp_path, HAND)), "--capacity", "primary=fast"],
        ["plan", str(write_plan(tmp_path, HAND)), "--set", "nokey"],
        ["plan", str(write_plan(tmp_path, HAND)), "--capacity", "primary"],
        ["plan", str(write_plan(tmp_path, HAND)), "--capacity", "a.b=1"],
    ]
    for args in cases:
        code = cli.main([*args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == cli.EXIT_BAD_INPUT, (args, err)
        assert err.count("\n") == 1, err
        assert "Traceback" not in err


def test_a_run_where_two_servers_accepted_mail_must_be_named(tmp_path, capsys):
    drill = runs.drill(tmp_path / "drill")
    data = {**HAND, "capacity": {"from": [str(drill)]}}
    code, _ = plan(tmp_path, str(write_plan(tmp_path, data)))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "primary, secondary accepted mail: name the server it measures" in err


def test_plan_json_round_trips_through_its_model(tmp_path):
    plan(tmp_path, str(write_plan(tmp_path, HAND)))
    raw = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert Plan.model_validate(raw).model_dump(mode="json") == raw


def test_a_start_and_window_h_make_a_window_too(tmp_path):
    data = {**HAND, "campaign": {**HAND["campaign"], "start": "2026-12-05T08:00:00Z"},
            "deadline": "2026-12-05T09:00:00Z"}  # fmt: skip
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    assert p.deadline_s == 3600


def test_a_window_by_dates_takes_moments_as_dates(tmp_path):
    data = {
        **HAND,
        "campaign": {**HAND["campaign"], "window_h": None,
                     "start": "2026-12-05T08:00:00Z", "end": "2026-12-05T09:00:00Z"},
        "outage": {"server": "primary", "at": "2026-12-05T08:30:00Z", "duration": "10m"},
        "deadline": "2026-12-05T10:00:00+01:00",  # 09:00 UTC: the window's end
    }  # fmt: skip
    data["campaign"].pop("window_h")
    code, p = plan(tmp_path, str(write_plan(tmp_path, data)))
    assert code == cli.EXIT_OK
    assert p is not None
    assert p.outage is not None
    assert p.outage.at_s == 1800
    assert p.deadline_s == 3600
    assert p.peak_backlog == 24_000
    assert p.start is not None
    assert p.start.isoformat() == "2026-12-05T08:00:00+00:00"


def test_every_field_of_plan_json_is_in_the_planning_doc():
    from loadtest.plan import result

    doc = (Path(__file__).resolve().parents[2] / "docs" / "planning.md").read_text()
    for model in (result.Plan, result.StreamOutcome, result.ServerOutcome, result.Extra,
                  result.FailoverTimings, result.OutageOutcome, result.LatenessS):  # fmt: skip
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name}"


def test_the_example_plan_plans(tmp_path):
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "plan-10m.yaml"
    code, p = plan(tmp_path, str(example))
    assert p is not None
    assert p.messages == 10_000_000
    assert code == (cli.EXIT_OK if p.met else cli.EXIT_SLO_FAILED)


def test_a_deadline_before_the_campaign_ends_cannot_be_bought(tmp_path):
    code, p = plan(tmp_path, str(write_plan(tmp_path, {**HAND, "deadline": "50m"})))
    assert code == cli.EXIT_SLO_FAILED
    assert p is not None
    assert p.extra is not None
    assert p.extra.msgs_per_s is None
    assert p.extra.why == "the deadline falls before the campaign's last message is due"


def test_the_readme_shows_what_the_plan_prints(tmp_path, capsys, monkeypatch):
    """README's "Planning a campaign": its plan.yaml, planned now, prints its output block."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Planning a campaign", 1)[1]
    spec = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = section.split("```\n$ maildrill plan plan.yaml --out reports/plan\n", 1)[1]
    shown = shown.split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    Path("plan.yaml").write_text(spec)
    code = cli.main(["plan", "plan.yaml", "--out", "reports/plan"])
    assert code == cli.EXIT_SLO_FAILED
    assert capsys.readouterr().out == shown
    assert (tmp_path / "reports" / "plan" / "plan.png").exists()


def test_plan_series_csv_holds_the_rates_and_backlogs_over_time(tmp_path):
    import csv

    plan(tmp_path, str(write_plan(tmp_path, HAND)))
    with (tmp_path / "out" / "plan-series.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["t_s", "offered_msgs_per_s", "deliverable_msgs_per_s", "backlog",
                             "backlog_transactional", "backlog_promotional"]  # fmt: skip
    at = {float(r["t_s"]): r for r in rows}  # 1 s steps, every one of them
    assert float(at[2400]["backlog"]) == 24_000
    assert float(at[2400]["backlog_promotional"]) == 24_000
    assert max(float(r["backlog_transactional"]) for r in rows) == 0
    assert float(at[1800]["deliverable_msgs_per_s"]) == 150  # the step ending at 1800
    assert float(at[1801]["deliverable_msgs_per_s"]) == 60
    assert float(at[100]["offered_msgs_per_s"]) == 100
    assert float(rows[-1]["backlog"]) == 0
