"""Numbers a scenario or sink config cannot run with are refused at validation, naming the
field; a fault that does not start during a run fails the run (exit 2), never passes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.cli import main
from tests.helpers import merge, wait_until

INF, NAN = float("inf"), float("nan")
HUGE = 10**30  # an integer YAML reads whole, past any count or size
TOO_LONG = "1" + "0" * 5000  # an integer Python will not even read (4300 digits at most)


def base_scenario() -> dict[str, Any]:
    return {
        "servers": [{"name": "primary", "local": True}, {"name": "secondary", "local": True}],
        "campaign": {"schedule": [{"duration_s": 5, "rate": 5}]},
    }


def fault(**fields: Any) -> dict[str, Any]:
    return {"faults": [{"at": 1, "target": "primary", "kind": "down", **fields}]}


def stream(**fields: Any) -> dict[str, Any]:
    return {"campaign": {"schedule": [{"duration_s": 5, "rate": 5}], "streams": [fields]}}


def stage(**fields: Any) -> dict[str, Any]:
    return {"campaign": {"schedule": [{"duration_s": 5, **fields}]}}


def server(**fields: Any) -> dict[str, Any]:
    return {"servers": [{"name": "primary", "local": True, **fields},
                        {"name": "secondary", "local": True}]}  # fmt: skip


def sink(**settings: Any) -> dict[str, Any]:
    return server(sink=settings)


# case: (patch on the base scenario, what the one error line must say)
BAD_NUMBERS: dict[str, tuple[dict[str, Any], str]] = {
    # faults: the timeline and each kind's parameters
    "fault duration inf": (fault(duration=INF), "faults[0].duration: inf is not a finite"),
    "fault at nan": (fault(at=NAN), "faults[0].at: nan is not a finite number"),
    "fault at 1e400": (fault(at="1e400"), "faults[0].at: Input should be a finite number"),
    "fault duration of years": (
        fault(duration=10**9),
        "faults[0].duration: 1000000000 is more than the limit of 604800 s (7 days)",
    ),
    "fault at + duration": (
        fault(at=4, duration=604_800),
        "faults[0]: at + duration is 604804 s, more than the limit of 604800 s",
    ),
    "fault after the schedule": (
        fault(at=30),
        "faults[0].at: 30 s is not before the end of the schedule (5 s)",
    ),
    "fault probability nan": (fault(probability=NAN), "faults[0].probability: nan is not"),
    "throttle rate inf": (fault(kind="throttle", rate=INF), "faults[0].rate: inf is not"),
    "throttle burst huge": (
        fault(kind="throttle", rate=5, burst=HUGE),
        "faults[0].burst: an integer of about 31 digits is too large",
    ),
    "latency ms 1e300": (
        fault(kind="latency", ms="1e300"),
        "faults[0] (latency): ms: 1e+300 is more than the limit of 604800000 ms",
    ),
    "flap period inf": (fault(kind="flap", period_s=INF), "faults[0].period_s: inf is not"),
    "connection cap huge": (
        fault(kind="connection_cap", max=HUGE),
        "faults[0].max: an integer of about 31 digits is too large",
    ),
    # the schedule
    "stage rate inf": (stage(rate=INF), "campaign.schedule[0].rate: inf is not a finite"),
    "stage to_rate 1e400": (
        stage(rate=1, to_rate="1e400"),
        "campaign.schedule[0].to_rate: Input should be a finite number",
    ),
    "stage rate past the limit": (
        stage(rate=10**7),
        "campaign.schedule[0].rate: 10000000 is more than the limit of 100000 msgs/s",
    ),
    "stage duration nan": (
        {"campaign": {"schedule": [{"duration_s": NAN, "rate": 1}]}},
        "campaign.schedule[0].duration_s: nan is not a finite number",
    ),
    "stage messages huge": (
        stage(messages=HUGE),
        "campaign.schedule[0].messages: an integer of about 31 digits is too large",
    ),
    "planned messages": (
        {"campaign": {"schedule": [{"duration_s": 500_000, "rate": 100}]}},
        "campaign: schedule: 50000000 messages planned, more than the limit of 10000000",
    ),
    "campaign length": (
        {"campaign": {"schedule": [{"duration_s": 600_000, "rate": 1}], "drain_s": 10_000}},
        "campaign: schedule and drain_s last 610000 s, more than the limit of 604800 s",
    ),
    "drain inf": ({"campaign": {"drain_s": INF}}, "campaign.drain_s: inf is not a finite"),
    "seed huge": ({"campaign": {"seed": HUGE}}, "campaign.seed: an integer of about 31"),
    # message streams: sizes, recipients, weights
    "size_max huge": (stream(size_max=HUGE), "campaign.streams[0].size_max: an integer"),
    "size_max past memory sense": (
        stream(size_max=10**9),
        "campaign.streams[0].size_max: 1000000000 is more than the limit of 67108864 bytes",
    ),
    "size_median inf": (stream(size_median=INF), "campaign.streams[0].size_median: inf"),
    "attachment past the limit": (
        stream(attachment_share=0.5, attachment_size=10**8),
        "campaign.streams[0].attachment_size: 100000000 is more than the limit",
    ),
    "recipients past the limit": (
        stream(recipients_min=1, recipients_max=50_000),
        "campaign.streams[0].recipients_max: 50000 is more than the limit of 1000 recipients",
    ),
    "stream weight inf": (stream(weight=INF), "campaign.streams[0].weight: inf is not"),
    "domain weight nan": (
        stream(domains={"gmail.test": NAN}),
        "campaign.streams[0].domains.gmail.test: nan is not a finite number",
    ),
    # routing: timeouts, retries, the circuit breaker
    "timeout inf": (
        {"routing": {"timeouts": {"connect": INF}}},
        "routing.timeouts.connect: inf is not a finite number",
    ),
    "timeout 1e300": (
        {"routing": {"timeouts": {"data": 1e300}}},
        "routing.timeouts.data: 1e+300 is too large",
    ),
    "retry backoff nan": (
        {"routing": {"retry": {"backoff_s": NAN}}},
        "routing.retry.backoff_s: nan is not a finite number",
    ),
    "retry factor 1e300 as YAML reads it": (
        {"routing": {"retry": {"backoff_factor": "1e300"}}},
        "routing.retry: backoff_factor: 1e+300 is too large",
    ),
    "retry attempts huge": (
        {"routing": {"retry": {"max_attempts": 10**6}}},
        "routing.retry.max_attempts: 1000000 is more than the limit of 1000 attempts",
    ),
    "circuit cooldown inf": (
        {"routing": {"circuit": {"cooldown_s": INF}}},
        "routing.circuit.cooldown_s: inf is not a finite number",
    ),
    # the load and the probes
    "users huge": ({"users": HUGE}, "users: an integer of about 31 digits is too large"),
    "users past the limit": ({"users": 50_000}, "users: 50000 is more than the limit of 10000"),
    "workers past the limit": ({"workers": 5000}, "workers: 5000 is more than the limit of 64"),
    "probe interval inf": ({"probe_interval_ms": INF}, "probe_interval_ms: inf is not"),
    "server weight huge": (
        server(weight=HUGE),
        "servers[0].weight: an integer of about 31 digits is too large",
    ),
    "server priority 1e300": (
        server(priority=1e300),
        "servers[0].priority: 1e+300 is too large",
    ),
    # a server's sink settings: a plain dict, checked as the sink will check it
    "sink size_limit huge": (sink(size_limit=HUGE), "servers[0].sink.size_limit: an integer"),
    "sink idle timeout inf": (sink(idle_timeout_s=INF), "servers[0].sink.idle_timeout_s: inf"),
    "sink session 1e300": (
        sink(max_session_s="1e300"),
        "servers[0]: sink: max_session_s: 1e+300 is more than the limit of 604800 s",
    ),
    "sink behaviour rate inf": (
        sink(behaviours=[{"kind": "throttle", "rate": INF}]),
        "servers[0].sink.behaviours[0].rate: inf is not a finite number",
    ),
    "sink fault at nan": (
        sink(faults=[{"kind": "down", "at": NAN}]),
        "servers[0].sink.faults[0].at: nan is not a finite number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
def test_bad_numbers_exit_2_naming_the_field(tmp_path: Path, case: str, capsys: Any) -> None:
    patch, expected = BAD_NUMBERS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(merge(base_scenario(), patch)))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    assert str(path) in err


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("users=.inf", "users: inf is not a finite number"),
        ("campaign.schedule.2.duration_s=.nan", "campaign.schedule[2].duration_s: nan is not"),
        ("campaign.schedule.1.rate=1.0e+400", "campaign.schedule[1].rate: inf is not a finite"),
        ("faults.0.duration=.inf", "faults[0].duration: inf is not a finite number"),
        (f"faults.0.at={HUGE}", "faults[0].at: an integer of about 31 digits is too large"),
        ("routing.retry.max_backoff_s=-.inf", "routing.retry.max_backoff_s: -inf is not"),
        ("servers.0.sink.size_limit=1e400", "servers[0]: sink: size_limit: Input should be"),
        (f"users={TOO_LONG}", "--set users: value is not valid YAML: a value that cannot be"),
    ],
)
def test_bad_set_values_exit_2_naming_the_field(assignment: str, expected: str, capsys: Any):
    assert main(["validate", "default", "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err


def test_an_integer_too_long_to_read_is_one_line_not_a_traceback(tmp_path: Path, capsys: Any):
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(base_scenario()) + f"users: {TOO_LONG}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "not valid YAML: a value that cannot be read" in err


def test_messages_in_flight_beyond_the_machine_are_refused(tmp_path: Path, capsys: Any):
    """1000 users each sending 64 MiB messages: some 256 GB of messages in flight, or more
    connections than the open-file limit; either way the line names users and the limit."""
    scenario = merge(base_scenario(), stream(size_min=64 << 20, size_median=64 << 20,
                                              size_max=64 << 20))  # fmt: skip
    scenario["users"] = 1000
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "users: 1000 users" in err
    assert "MB of memory, more than the" in err or "open files" in err


def test_a_postfix_fault_takes_no_parameters(tmp_path: Path, capsys: Any) -> None:
    """`postfix stop` has no parameters: one given would be silently dropped at run time."""
    scenario = base_scenario()
    scenario["servers"].append({"name": "mta", "postfix": {"relay": "primary"}})
    scenario["faults"] = [{"at": 1, "target": "mta", "kind": "mta-stop", "signal": 9}]
    path = tmp_path / "mta.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert main(["validate", str(path)]) == 2
    assert "faults[0] (mta-stop): takes no parameters; got signal" in capsys.readouterr().err


SINK_CONFIG_BAD = {
    "idle timeout inf": ({"idle_timeout_s": INF}, "sinks[0].idle_timeout_s: inf is not"),
    "fault duration inf": (
        {"faults": [{"kind": "down", "at": 1, "duration": INF}]},
        "sinks[0].faults[0].duration: inf is not a finite number",
    ),
    "fault at 1e400": (
        {"faults": [{"kind": "down", "at": "1e400"}]},
        "sinks[0].faults[0].at: Input should be a finite number",
    ),
    "behaviour rate nan": (
        {"behaviours": [{"kind": "throttle", "rate": NAN}]},
        "sinks[0].behaviours[0].rate: nan is not a finite number",
    ),
    "size limit huge": ({"size_limit": HUGE}, "sinks[0].size_limit: an integer of about 31"),
    "greylist delay 1e300": (
        {"behaviours": [{"kind": "greylist", "delay_s": 1e300}]},
        "sinks[0].behaviours[0].delay_s: 1e+300 is too large",
    ),
}


def maildrill_sink(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`maildrill sink CONFIG` in its own process: a config that validates would serve (and
    be stopped by the timeout, failing the test), not hang it."""
    path = tmp_path / "sinks.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "sink", str(path), "--out", str(tmp_path / "j")],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize("case", sorted(SINK_CONFIG_BAD))
def test_sink_config_with_bad_numbers_exits_2(tmp_path: Path, case: str) -> None:
    settings, expected = SINK_CONFIG_BAD[case]
    done = maildrill_sink({"sinks": [{"name": "mx", **settings}]}, tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "j").exists()


def test_sink_config_start_at_inf_exits_2(tmp_path: Path) -> None:
    done = maildrill_sink({"start_at": INF, "sinks": [{"name": "mx"}]}, tmp_path)
    assert done.returncode == 2
    assert "start_at: inf is not a finite number" in done.stderr


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "connection_cap", "max": HUGE}, "max"),
        ({"kind": "down", "duration": 10**9}, "duration: 1000000000 is more than the limit"),
        ({"kind": "latency", "ms": 1e300}, "ms"),
    ],
)
def test_control_api_refuses_huge_numbers(start_sinks: Any, body: dict[str, Any], field: str):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, reply = sinks.control("mx", "POST", "/faults", body)
    assert status == 400
    assert field in reply["error"]
    assert sinks.control("mx", "GET", "/faults") == (200, [])


# -- at run time ------------------------------------------------------------------------


def _processes_naming(text: str) -> dict[int, str]:
    """PID -> command line of every process whose command line contains `text`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found[int(pid)] = cmdline
    return found


@pytest.mark.slow
def test_a_fault_the_sink_cannot_take_fails_the_run(tmp_path: Path) -> None:
    """The primary's sink dies before its scheduled `down` (validation cannot foresee it):
    the fault does not start, so the run stops, exits 2, records why, never passes."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=1", "--set", "campaign.schedule.1.duration_s=6",
         "--set", "campaign.schedule.2.duration_s=1", "--set", "campaign.drain_s=2",
         "--set", "faults.0.at=4", "--set", "faults.0.duration=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = wait_until(lambda: (run_dir / "run.json").exists(), 60, step=0.02)
    assert started, proc.communicate(timeout=60)
    # The campaign starts 1 s after run.json; the fault is due 4 s after that.
    t0 = json.loads((run_dir / "run.json").read_text())["t0"]
    sinks = _processes_naming(str(run_dir))
    (pid,) = [p for p, cmd in sinks.items() if " -m sinks " in cmd and "/primary.yaml " in cmd]
    os.kill(pid, signal.SIGKILL)
    assert time.time() < t0 + 3.5, "the machine is too slow to kill the sink before its fault"
    out, err = proc.communicate(timeout=90)

    assert proc.returncode == 2, out + err
    assert "SLOs PASSED" not in out + err
    assert "fault down on primary at 4 s did not start" in err
    assert "RUN FAILED" in out
    harness = json.loads((run_dir / "harness.json").read_text())
    assert harness["partial"] is True
    assert harness["aborted_by"].startswith("fault down on primary at 4 s did not start: ")
    (failed,) = [e for e in harness["events"] if e["event"] == "fault_failed"]
    assert (failed["target"], failed["kind"], failed["at_s"]) == ("primary", "down", 4)
    assert "control API did not answer" in failed["error"]
    assert harness["faults"][0]["status"].startswith("failed: ")
    # Stopped early and cleanly: journals kept, summary written and marked, nothing left.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["slo"]["passed"] is False
    assert summary["harness"]["aborted_by"] == harness["aborted_by"]
    assert (run_dir / "attempts.csv").stat().st_size > 0
    assert "RUN FAILED" in (run_dir / "report.md").read_text()
    assert _processes_naming(str(run_dir)) == {}
    again = subprocess.run([sys.executable, "-m", "loadtest.cli", "report", str(run_dir)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 2
    assert "did not start" in again.stderr
