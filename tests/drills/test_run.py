"""`maildrill run` end to end: real sinks, real Locust, real faults, the run directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.drills.run_helpers import (
    assert_only_the_cut_sessions_failed,
    assert_summary_matches_sinks,
    maildrill,
)
from tests.helpers import (
    REPO,
    SHORT_DEFAULT,
    merge,
    read_csv,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_drill(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One short default drill, read by the tests that only look at what it left."""
    run_dir = tmp_path_factory.mktemp("default") / "run"
    return run_dir, maildrill("run", "default", "--out", str(run_dir), *SHORT_DEFAULT)


def test_default_drill_end_to_end(default_drill):
    run_dir, done = default_drill
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("scenario.yaml", "attempts.csv", "receipts-primary.csv",
                 "receipts-secondary.csv", "faults-primary.csv", "summary.json",
                 "locust_stats.csv", "run.json", "harness.json"):  # fmt: skip
        assert (run_dir / name).exists(), name
    summary = assert_summary_matches_sinks(run_dir)
    m = summary["messages"]
    assert m["planned"] == 250  # 25 + 200 + 25 messages
    assert_only_the_cut_sessions_failed(run_dir, m)
    assert m["lost"] == m["duplicates"] == m["not_sent"] == 0
    assert summary["partial"] is False
    (failover,) = summary["failovers"]
    assert failover["target"] == "primary"
    assert failover["kind"] == "down"
    # Sent over the control API at t0 + 2 s; on a loaded machine the sink may apply it late
    # (0.6 s seen right after the 20-interruption test). The analysis reports it as it was.
    assert failover["onset_s"] == pytest.approx(2.0, abs=0.75)
    assert 0 <= failover["failover_s"] < 1.0
    assert failover["failback_s"] is not None
    # Independently, from the sinks' own journals: onset on the primary's clock, first
    # receipt on the secondary after it. The client's 250 comes within 10 ms of that.
    onset = next(float(f["time"]) for f in read_csv(run_dir / "faults-primary.csv")
                 if f["kind"] == "down" and f["state"] == "start")  # fmt: skip
    first_on_secondary = min(
        float(r["time"]) for r in read_csv(run_dir / "receipts-secondary.csv")
        if float(r["time"]) >= onset
    )  # fmt: skip
    assert failover["failover_s"] == pytest.approx(first_on_secondary - onset, abs=0.010)
    assert summary["slo"]["passed"] is True
    assert "SLOs PASSED" in done.stdout


def test_default_drill_writes_reports_that_re_analysis_reproduces(default_drill, tmp_path):
    """Self-contained reports; re-analysis of the journals alone reproduces them."""
    run_dir, done = default_drill
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert f"Report: {run_dir / 'report.html'}" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["capacity"]["knee_msgs_per_s"] is None  # not a step load
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "http://" not in html
    assert "https://" not in html
    plots = sorted(p.stem for p in (run_dir / "plots").glob("*.png"))
    assert plots == ["latency", "lateness", "replies", "throughput"]
    for name in plots:
        with Image.open(run_dir / "plots" / f"{name}.png") as image:
            assert image.format == "PNG"
    md = (run_dir / "report.md").read_text()
    f = summary["failovers"][0]
    assert f"| {f['target']} | {f['kind']} |" in md
    assert (run_dir / "series" / "servers.csv").exists()

    # Re-analysis from the journals alone gives the same summary and the same Markdown.
    again = maildrill("report", str(run_dir))
    assert again.returncode in (0, 1), again.stderr
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert (run_dir / "report.md").read_text() == md

    compared = maildrill("compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "c.md"))
    assert compared.returncode == 0, compared.stderr
    assert "| worse |" not in compared.stdout
    assert "| better |" not in compared.stdout


def with_postfix_routes(routes: dict[str, str]) -> dict:
    mta = {"name": "mta", "postfix": {"relay": "primary", "routes": routes}}
    return {"servers": [{"name": "primary", "local": True},
                        {"name": "secondary", "local": True}, mta]}  # fmt: skip


BAD_SCENARIOS = {
    "unknown key": ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    "wrong type": ({"users": "many"}, "users: Input should be a valid integer"),
    "negative rate": (
        {"campaign": {"schedule": [{"duration_s": 5, "rate": -3}]}},
        "campaign.schedule[0].rate: Input should be greater than or equal to 0",
    ),
    "zero duration": (
        {"campaign": {"schedule": [{"duration_s": 0, "rate": 3}]}},
        "campaign.schedule[0].duration_s: Input should be greater than 0",
    ),
    "fault on unknown server": (
        {"faults": [{"at": 1, "target": "tertiary", "kind": "down"}]},
        "faults[0].target: unknown server 'tertiary'",
    ),
    "unknown fault kind": (
        {"faults": [{"at": 1, "target": "primary", "kind": "explode"}]},
        "faults[0].kind: unknown 'explode'",
    ),
    "bad fault parameter": (
        {"faults": [{"at": 1, "target": "primary", "kind": "throttle", "rate": 0}]},
        "faults[0] (throttle): rate: Input should be greater than 0",
    ),
    "remote host": (
        {"servers": [{"name": "primary", "host": "203.0.113.5", "port": 25}]},
        "'primary' is at 203.0.113.5, outside loopback; set allow_remote: true",
    ),
    "overlapping contradictory faults": (
        {
            "faults": [
                {"at": 1, "target": "primary", "kind": "down", "duration": 10},
                {"at": 4, "target": "primary", "kind": "hang", "duration": 2},
            ]
        },
        "faults[1] (hang at 4 s) overlaps faults[0] (down until 11 s) on 'primary'",
    ),
    "unknown SLO metric": ({"slo": ["speed >= 3"]}, "slo[0]: unknown metric 'speed'"),
    "malformed SLO": ({"slo": ["lost is zero"]}, "slo[0]: 'lost is zero' is not 'metric <op>"),
    "real recipient domain": (
        {"campaign": {"streams": [{"domains": {"gmail.com": 1}}]}},
        "'gmail.com' is a real domain; list it in campaign.allowed_recipient_domains",
    ),
    "routing to unknown server": (
        {"routing": {"servers": ["primary", "backup"]}},
        "routing: unknown server 'backup'",
    ),
    "postfix route to a server that is not a sink": (
        with_postfix_routes({"gmail.test": "nowhere"}),
        "'mta': postfix.routes[gmail.test] 'nowhere' is not a local sink",
    ),
    "postfix route for a malformed domain": (
        with_postfix_routes({"gmail test": "primary"}),
        "servers[2].postfix.routes: 'gmail test' holds spaces or control characters",
    ),
    "sink settings on remote server": (
        {"servers": [{"name": "primary", "port": 2525, "sink": {"size_limit": 5}}]},
        "sink settings need local: true",
    ),
}


def base_scenario() -> dict:
    return {
        "servers": [{"name": "primary", "local": True}, {"name": "secondary", "local": True}],
        "campaign": {"schedule": [{"duration_s": 5, "rate": 5}]},
    }


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_malformed_scenarios_exit_2_naming_the_field(tmp_path, case, capsys):
    import yaml

    from loadtest.cli import main

    patch, expected = BAD_SCENARIOS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(merge(base_scenario(), patch)))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_bad_scenario_exit_code_from_a_real_process(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("servers: []\ncampaign: {schedule: [{duration_s: 1, rate: 1}]}\n")
    done = maildrill("run", str(path), "--out", str(tmp_path / "run"), timeout=30)
    assert done.returncode == 2
    assert "servers: List should have at least 1 item" in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_set_and_unknown_scenario_exit_2(tmp_path):
    assert "no item 7" in maildrill("validate", "default", "--set", "faults.7.at=1").stderr
    missing = maildrill("run", "no-such-drill", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert "no bundled scenario of that name" in missing.stderr


def test_unwritable_output_directory_fails_before_any_load(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    done = maildrill("run", "default", "--out", str(blocked / "run"))
    assert done.returncode == 2
    assert "cannot write to" in done.stderr


def test_scenarios_lists_every_bundled_file(capsys):
    from loadtest.cli import main

    assert main(["scenarios"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    bundled = {p.stem for p in (REPO / "scenarios").glob("*.yaml")}
    assert names == bundled
    for name in bundled:
        assert main(["validate", name]) == 0, name
        assert f"ok: {name}:" in capsys.readouterr().out


def test_a_reader_that_stops_early_is_no_error():
    """`maildrill scenarios | head -1`: the pipe closes before the listing is written."""
    read, write = os.pipe()
    os.close(read)  # a reader that already left: every write gets EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "scenarios"],
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
    )  # fmt: skip
    os.close(write)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_remote_targets_need_yes_even_when_the_scenario_allows_them(tmp_path):
    import yaml

    scenario = {
        "name": "remote",
        "allow_remote": True,
        "servers": [{"name": "mx", "host": "192.0.2.10", "port": 25}],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(scenario))
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert "mx 192.0.2.10:25" in done.stderr
    assert "pass --yes to confirm" in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_full_disk_is_refused_before_any_load(tmp_path):
    """A real 2 MB tmpfs stands in for a nearly full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        done = maildrill("run", "default", "--out", str(mount / "run"), *SHORT_DEFAULT)
        assert done.returncode == 2
        assert "MB free, this run needs about" in done.stderr
        assert not (mount / "run" / "attempts.csv").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
