"""`maildrill run` end to end: real sinks, real Locust, real faults, the run directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from loadtest.cli import EXIT_PARTIAL
from tests.helpers import (
    LATE_S,
    REPO,
    SHORT_DEFAULT,
    assert_delays,
    merge,
    parent_pid,
    read_csv,
)

pytestmark = pytest.mark.slow


def maildrill(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_run(run_dir: Path, *args: str, ready: str = "run.json") -> subprocess.Popen[str]:
    """The shortened default drill in the background, once `ready` is in its run dir."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         *SHORT_DEFAULT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.time() + 40
    while time.time() < deadline and not (run_dir / ready).exists():
        time.sleep(0.02)
    return proc


def receipts(run_dir: Path) -> list[dict[str, str]]:
    return [row for path in sorted(run_dir.glob("receipts*.csv")) for row in read_csv(path)]


def assert_summary_matches_sinks(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    attempts = read_csv(run_dir / "attempts.csv")
    received = Counter(r["msg_id"] for r in receipts(run_dir))
    accepted_ids = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    m = summary["messages"]
    assert m["received_unique"] == len(received)
    assert m["accepted"] == len(accepted_ids)
    assert m["lost"] == len(accepted_ids - set(received))
    assert m["duplicates"] == sum(1 for n in received.values() if n > 1)
    assert m["attempted"] == len({a["msg_id"] for a in attempts})
    per_server = summary["throughput"]["per_server"]
    for sink in ("primary", "secondary"):
        mine = [a["msg_id"] for a in attempts if a["server"] == sink and a["outcome"] == "accepted"]
        assert per_server.get(sink, {}).get("accepted", 0) == len(mine)
        # Each 250 has its receipt on that sink. A receipt may have no 250: the sender was
        # cut or stopped (SIGINT) before it read the reply; the attempts count, not the sink.
        kept = {(r["msg_id"], r["outcome"]) for r in receipts(run_dir) if r["sink"] == sink}
        assert {(msg_id, "accepted") for msg_id in mine} <= kept
    return summary


def assert_only_the_cut_sessions_failed(run_dir: Path, m: dict) -> None:
    """`down` cuts open sessions: a message caught mid-transaction may fail, nothing else."""
    assert m["accepted"] + m["failed"] == 250
    attempts = read_csv(run_dir / "attempts.csv")
    failed_finals = [a for a in attempts if a["final"] == "1" and a["outcome"] != "accepted"]
    assert len(failed_finals) == m["failed"] <= 3
    assert all(a["maybe_duplicate"] == "1" for a in failed_finals)


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


def test_distributed_drill_with_two_workers(tmp_path):
    run_dir = tmp_path / "run"
    done = maildrill("run", "default", "--out", str(run_dir), "--workers", "2", *SHORT_DEFAULT)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = assert_summary_matches_sinks(run_dir)
    assert_only_the_cut_sessions_failed(run_dir, summary["messages"])
    workers = {a["worker"] for a in read_csv(run_dir / "attempts.csv")}
    assert len(workers) == 2


def _descendants_alive(run_dir: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_sigint_mid_run_leaves_journals_partial_summary_and_no_orphans(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PARTIAL, out + err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True
    assert "PARTIAL RUN (interrupted by SIGINT)" in out
    assert 0 < summary["messages"]["attempted"] < 250
    assert summary["messages"]["not_sent"] > 0
    assert_summary_matches_sinks(run_dir)
    time.sleep(0.5)
    assert _descendants_alive(run_dir) == []


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


def test_a_sink_killed_mid_run_is_named_and_the_run_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--set", "faults=[]")
    time.sleep(3.0)
    (pid,) = [
        int(line.split(":")[0])
        for line in _descendants_alive(run_dir)
        if " -m sinks " in line and "/primary.yaml " in line
    ]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), out + err
    assert "sink primary died" in err
    harness = json.loads((run_dir / "harness.json").read_text())
    (death,) = harness["sink_deaths"]
    assert death["sink"] == "primary"
    assert death["exit_code"] == -signal.SIGKILL
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["harness"]["sink_deaths"][0]["sink"] == "primary"
    # The secondary took over; the primary's journal up to the kill is whole: every 250
    # it gave has its receipt (nothing lost), and no line of it is torn.
    m = summary["messages"]
    assert_only_the_cut_sessions_failed(run_dir, m)
    assert m["lost"] == 0
    assert summary["journal_problems"]["skipped_lines"] == {}
    assert summary["throughput"]["per_server"]["secondary"]["accepted"] > 100


def test_backup_mx_drill_forwards_everything_once(tmp_path):
    run_dir = tmp_path / "run"
    done = maildrill(
        "run", "backup-mx", "--out", str(run_dir),
        "--set", "campaign.schedule.0.duration_s=8", "--set", "faults.0.at=2",
        "--set", "faults.0.duration=3", "--set", "campaign.drain_s=6",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["messages"]
    assert m["planned"] == 320
    assert m["lost"] == m["duplicates"] == m["stranded"] == 0
    # Independently: what the backup queued is exactly what it forwarded to the primary.
    queued = {r["msg_id"] for r in read_csv(run_dir / "receipts-backup.csv")}
    assert queued
    relay = read_csv(run_dir / "relay-backup.csv")
    forwarded = {r["msg_id"] for r in relay if r["event"] == "forwarded"}
    assert forwarded == queued
    at_primary = Counter(r["msg_id"] for r in read_csv(run_dir / "receipts-primary.csv"))
    assert all(at_primary[msg] == 1 for msg in queued)
    backup = summary["relay"]["backup"]
    assert backup["queued"] == backup["forwarded"] == len(queued)
    assert backup["left_in_queue"] == 0
    assert backup["drain_s"] is not None
    assert 0 <= backup["drain_s"] < 6
    # Drain time and end-to-end delay, recounted: the queue depth from the relay journal
    # back to zero after the primary's clear; client 250 to the primary's receipt.
    clear = max(float(f["time"]) for f in read_csv(run_dir / "faults-primary.csv")
                if f["state"] == "stop")  # fmt: skip
    depth, deepest, emptied = 0, 0, None
    for r in sorted(relay, key=lambda r: float(r["time"])):
        depth += {"queued": 1, "forwarded": -1, "bounced": -1}.get(r["event"], 0)
        deepest = max(deepest, depth)
        if depth == 0 and float(r["time"]) >= clear and emptied is None:
            emptied = float(r["time"])
    assert backup["drain_s"] == pytest.approx(emptied - clear, abs=1e-5)
    assert backup["max_depth"] == deepest
    assert backup["forward_attempts_deferred"] == sum(r["event"] == "deferred" for r in relay)
    attempts = read_csv(run_dir / "attempts.csv")
    accepted_at = {a["msg_id"]: float(a["end"]) for a in attempts if a["outcome"] == "accepted"}
    first = {}
    for r in read_csv(run_dir / "receipts-primary.csv"):
        if r["msg_id"] in queued:
            first[r["msg_id"]] = min(float(r["time"]), first.get(r["msg_id"], float("inf")))
    assert_delays(backup["end_to_end_ms"], first, accepted_at)


def test_primary_hang_drill_fails_over_after_one_timeout_and_loses_nothing(tmp_path):
    """The bundled primary-hang, cut short: the hang freezes the senders' open sessions, so
    each finds it by one 2 s timeout (command on its session, greeting on a new one) and
    its message goes to the secondary at once: failover within 5 s, nothing lost."""
    run_dir = tmp_path / "run"
    done = maildrill(
        "run", "primary-hang", "--out", str(run_dir),
        "--set", "campaign.schedule.0.duration_s=6", "--set", "faults.0.at=2",
        "--set", "faults.0.duration=2.5", "--set", "campaign.drain_s=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    (failover,) = summary["failovers"]
    attempts = read_csv(run_dir / "attempts.csv")
    onset = next(float(f["time"]) for f in read_csv(run_dir / "faults-primary.csv")
                 if f["kind"] == "hang" and f["state"] == "start")  # fmt: skip
    # Recounted from the attempts: the first acceptance elsewhere, the first failure there.
    first_elsewhere = min(float(a["end"]) for a in attempts if a["server"] == "secondary"
                          and a["outcome"] == "accepted" and float(a["end"]) >= onset)  # fmt: skip
    failed = [a for a in attempts if a["server"] == "primary" and a["outcome"] != "accepted"]
    first_failure = min(float(a["end"]) for a in failed if float(a["end"]) >= onset)
    assert failover["failover_s"] == pytest.approx(first_elsewhere - onset, abs=1e-5)
    assert failover["detection_s"] == pytest.approx(first_failure - onset, abs=1e-5)
    assert failover["failover_s"] < 5
    # One timeout of 2 s, however late the loaded machine ran it.
    assert 2.0 - LATE_S <= failover["detection_s"] <= 2.0 + 2 * LATE_S
    # Open sessions froze: their next MAIL timed out (the old hang let them deliver on).
    # A hung server times out whatever the phase: no refusal, no reply of any kind.
    phases = Counter((a["phase"], a["outcome"]) for a in failed)
    assert phases[("mail", "timeout")] > 0
    assert {outcome for _, outcome in phases} == {"timeout"}
    # And from the sinks' journals: the secondary's first receipt after the onset is that
    # failover (its 250 follows the receipt); every accepted message has one receipt.
    first_receipt = min(float(r["time"]) for r in read_csv(run_dir / "receipts-secondary.csv")
                        if float(r["time"]) >= onset)  # fmt: skip
    assert first_receipt - onset == pytest.approx(failover["failover_s"], abs=LATE_S)
    received = Counter(r["msg_id"] for r in receipts(run_dir))
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    m = summary["messages"]
    assert m["lost"] == len(accepted - set(received)) == 0
    assert m["duplicates"] == sum(n > 1 for n in received.values()) == 0
    assert summary["slo"]["passed"] is True


def test_a_locust_worker_killed_mid_run_is_reported_and_its_journal_kept(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--workers", "2", "--set", "faults=[]",
                     "--set", "campaign.schedule.1.duration_s=3")  # fmt: skip
    time.sleep(2.5)
    # The two workers of this run are children of its maildrill process.
    mine = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "--worker" in cmd and parent_pid(int(pid)) == proc.pid:
            mine.append(int(pid))
    assert len(mine) == 2
    os.kill(mine[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode in (0, 1), out + err
    assert "Locust worker" in err
    harness = json.loads((run_dir / "harness.json").read_text())
    assert len(harness["workers_lost"]) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["harness"]["workers_lost"]) == 1
    # What both workers journaled is whole and agrees with the sinks; the dead worker's
    # share after its death was never sent, and the summary says so.
    m = summary["messages"]
    assert m["lost"] == 0
    assert m["not_sent"] > 0
    assert summary["journal_problems"]["skipped_lines"] == {}
    attempts = read_csv(run_dir / "attempts.csv")
    assert len({a["worker"] for a in attempts}) == 2


def _descendant_cmdlines(root: int) -> list[str]:
    """The command lines of every process below `root` (by parent PID, not by argv)."""
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            parents[int(pid)] = parent_pid(int(pid))
    below, found = {root}, []
    while grown := {p for p, parent in parents.items() if parent in below} - below:
        below |= grown
    for pid in below - {root}:
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.mark.parametrize("processes", [1, 2])
def test_auth_secrets_stay_out_of_run_files_logs_and_command_lines(tmp_path, processes):
    """A drill with AUTH over STARTTLS on both sides: the passwords reach the sink (its
    worker processes too) and the sender, and nowhere else (journals, reports, logs, the
    scenario as run, process list); the sink's generated TLS key stays out of the run."""
    import yaml

    secret_sink, secret_client = "s1nk-S3CRET-4f9a", "cl13nt-S3CRET-7b2c"
    creds = tmp_path / "sink-credentials"
    creds.write_text(f"campaign:{secret_client}\nops:{secret_sink}\n")
    scenario = {
        "name": "auth",
        "servers": [
            {
                "name": "primary",
                "local": True,
                "username": "campaign",
                "password_env": "MAILDRILL_TEST_PASSWORD",
                "starttls": True,
                "sink": {
                    "processes": processes,
                    "starttls": True,
                    "auth": {
                        "required": True,
                        "credentials_file": str(creds),
                        "credentials": {"inline": secret_sink},
                    },
                },
            }
        ],
        "campaign": {"schedule": [{"duration_s": 3, "rate": 20}], "drain_s": 2},
        "users": 4,
        "slo": ["lost == 0", "failed == 0"],
    }
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    env = {**os.environ, "MAILDRILL_TEST_PASSWORD": secret_client}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen_in_cmdlines = []
    while proc.poll() is None:
        seen_in_cmdlines += [c for c in _descendant_cmdlines(proc.pid) if "S3CRET" in c]
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert seen_in_cmdlines == []
    assert "S3CRET" not in out + err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["messages"]["accepted"] == 60  # AUTH worked: every message went in
    leaks = [
        str(f)
        for f in run_dir.rglob("*")
        if f.is_file() and (b"S3CRET" in f.read_bytes() or b"PRIVATE KEY" in f.read_bytes())
    ]
    assert leaks == []
    assert len(list(run_dir.glob("receipts-primary*.csv"))) == processes
    assert "<redacted>" in (run_dir / "scenario.yaml").read_text()


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
