"""Real Postfix instances under test, built, faulted and torn down by `maildrill run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loadtest.analysis.rundir import read_scenario
from loadtest.campaign import MessageFactory
from loadtest.cli import EXIT_PARTIAL
from loadtest.postfix import postfix_binary
from tests.helpers import (
    REPO,
    assert_delays,
    postfix_run_dir,
    postfix_running,
    read_csv,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postfix]


@pytest.fixture
def run_dir():
    """Postfix runs as its own user: the run directory must be reachable by it."""
    yield from postfix_run_dir("maildrill-postfix-")


def drill(run_dir: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def downstream_receipts(run_dir: Path) -> list[dict[str, str]]:
    return [r for sink in ("gmail-mx", "yahoo-mx", "other-mx")
            for r in read_csv(run_dir / f"receipts-{sink}.csv")]  # fmt: skip


def no_postfix_left(run_dir: Path) -> bool:
    assert list(run_dir.glob("postfix-*/etc")), "no instance was built"
    return postfix_running(run_dir) == []


def test_primary_stopped_mid_campaign_every_message_accounted(run_dir):
    done = drill(run_dir, "campaign.schedule.0.duration_s=8", "faults.0.at=2",
                 "faults.0.duration=2", "campaign.drain_s=8")  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    # A primary stopped after queueing a message and before answering its dot delivers it
    # while the client, told nothing, sends it again through the secondary (RFC 1047): a
    # real duplicate, which the drill's `duplicates == 0` rightly fails on (exit 1). No
    # other rule may fail; the counts are recounted below either way.
    failing = [c["name"] for c in summary["slo"]["checks"] if not c["passed"]]
    assert failing in ([], ["duplicates"]), done.stdout
    assert (done.returncode == 1) == bool(failing)
    attempts = read_csv(run_dir / "attempts.csv")
    receipts = downstream_receipts(run_dir)
    downstream = Counter(r["msg_id"] for r in receipts)
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    stuck = {
        r["msg_id"] for p in run_dir.glob("mta-queue-*.csv") for r in read_csv(p)
    }  # fmt: skip
    m = summary["messages"]
    # Independent recount: each accepted message is downstream once, or counted as
    # duplicated or stranded, and the summary's numbers are exactly these.
    assert m["accepted"] == len(accepted)
    assert m["planned"] == 240 == len({a["msg_id"] for a in attempts})
    assert m["duplicates"] == sum(1 for n in downstream.values() if n > 1)
    # Each went through the primary that was stopped: sent again by the client after a cut
    # session, or by the primary after its restart (a delivery cut before it was recorded).
    for twice in (msg_id for msg_id, n in downstream.items() if n > 1):
        assert any(a["server"] == "primary" for a in attempts if a["msg_id"] == twice)
    assert m["stranded"] == len((accepted - set(downstream)) & stuck)
    assert m["lost"] == len(accepted - set(downstream) - stuck) == 0
    # A primary stopped between queueing a message and answering its dot delivers
    # what the client saw fail: phantom, never silently folded into accepted.
    assert m["phantom"] == len(set(downstream) - accepted)
    # The MTAs added their Received: lines; the id survived the relay unchanged.
    assert all(n >= 1 for n in downstream.values())
    # Failover timing, recounted from the raw journals.
    (stop,) = [f for f in read_csv(run_dir / "faults-primary.csv") if f["state"] == "start"]
    onset = float(stop["time"])
    first_on_secondary = min(
        float(a["end"]) for a in attempts
        if a["server"] == "secondary" and a["outcome"] == "accepted" and float(a["end"]) >= onset
    )  # fmt: skip
    (failover,) = summary["failovers"]
    assert failover["kind"] == "mta-stop"
    assert failover["failover_s"] == pytest.approx(first_on_secondary - onset, abs=0.001)
    restart = [f for f in read_csv(run_dir / "faults-primary.csv") if f["state"] == "stop"]
    assert len(restart) == 1
    # On a loaded machine a message can be mid-transaction on the primary when it stops:
    # cut after the dot, it fails (not retried: the MTA may have it). Nothing else fails.
    for a in attempts:
        if a["msg_id"] not in accepted and a["final"] == "1":
            assert a["server"] == "primary", a
            assert onset - 1.0 <= float(a["end"]) <= onset + 1.0, a
    assert failover["failback_s"] is not None
    mta = summary["mta"]
    assert mta["primary"]["accepted"] + mta["secondary"]["accepted"] == len(accepted)
    assert mta["primary"]["delivered"] == mta["primary"]["accepted"]
    # Each recipient domain went to the sink standing in for its provider (transport_maps):
    # the campaign is rebuilt from its seed to know every message's recipient.
    scenario = read_scenario(run_dir)
    assert scenario is not None
    factory = MessageFactory(scenario.streams(), summary["run_id"], scenario.campaign.seed)
    domain_of = {
        (m := factory.build(i)).msg_id: m.recipients[0].rpartition("@")[2] for i in range(240)
    }
    routes = {"gmail.test": "gmail-mx", "yahoo.test": "yahoo-mx"}
    assert {r["sink"] for r in receipts} == {"gmail-mx", "yahoo-mx", "other-mx"}
    for r in receipts:
        assert r["sink"] == routes.get(domain_of[r["msg_id"]], "other-mx"), r
    # Delivery delay per MTA and per path, recounted: first receipt minus the client's 250.
    accepted_at = {}
    for a in attempts:
        if a["outcome"] == "accepted":
            accepted_at.setdefault(a["server"], {})[a["msg_id"]] = float(a["end"])
    for name in ("primary", "secondary"):
        first: dict[str, float] = {}
        by_path: dict[str, dict[str, float]] = {}
        for r in receipts:
            if r["msg_id"] in accepted_at[name]:
                t = float(r["time"])
                first[r["msg_id"]] = min(t, first.get(r["msg_id"], t))
                path = by_path.setdefault(r["sink"], {})
                path[r["msg_id"]] = min(t, path.get(r["msg_id"], t))
                # Each instance delivers from its own loopback address (smtp_bind_address,
                # maildrill's default: .11, .12 in scenario order) and EHLO name.
                assert r["helo"] == f"{name}.maildrill.test"
                assert r["peer"] == {"primary": "127.0.0.11", "secondary": "127.0.0.12"}[name]
        assert_delays(mta[name]["delivery_delay_ms"], first, accepted_at[name])
        for sink, firsts in by_path.items():
            path = mta[name]["paths"][sink]
            assert path["messages"] == len(firsts)
            assert path["relayed_by"] == {f"{name}.maildrill.test": path["receipts"]}
            assert_delays(path["delivery_delay_ms"], firsts, accepted_at[name])


def test_mta_aborted_mid_delivery_sends_again_what_was_in_flight(run_dir):
    """Postfix delivers at least once: other-mx keeps each message, then takes 1.5 s to say
    250 (latency at the ack stage); `postfix abort` at 2 s kills the deliveries waiting
    for it, and the restarted primary sends those messages again: duplicates the MTA made,
    counted as such, and nothing lost."""
    done = drill(
        run_dir, "campaign.schedule.0.duration_s=4", "campaign.schedule.0.rate=10",
        "faults.0.at=2", "faults.0.kind=mta-abort", "faults.0.duration=2", "campaign.drain_s=10",
        "servers.4.sink.behaviours=[{kind: latency, stages: [ack], ms: 1500}]", "slo=[lost == 0]",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    attempts = read_csv(run_dir / "attempts.csv")
    receipts = downstream_receipts(run_dir)
    copies = Counter(r["msg_id"] for r in receipts)
    twice = {m for m, n in copies.items() if n > 1}
    by_primary = {a["msg_id"] for a in attempts
                  if a["outcome"] == "accepted" and a["server"] == "primary"}  # fmt: skip
    (abort,) = [f for f in read_csv(run_dir / "faults-primary.csv") if f["state"] == "start"]
    by_secondary = {a["msg_id"] for a in attempts
                    if a["outcome"] == "accepted" and a["server"] == "secondary"}  # fmt: skip
    # The MTA's own duplicates: other-mx had the message before the abort, and the
    # restarted primary sent it again (its EHLO name on both copies).
    resent = {
        m for m in twice
        if {(r["sink"], r["helo"]) for r in receipts if r["msg_id"] == m}
        == {("other-mx", "primary.maildrill.test")}
        and min(float(r["time"]) for r in receipts if r["msg_id"] == m) < float(abort["time"])
    }  # fmt: skip
    assert resent, "an abort 2 s in, with 1.5 s acks, leaves deliveries in flight"
    assert resent <= by_primary
    m = summary["messages"]
    assert m["duplicates"] == len(twice)
    primary = summary["mta"]["primary"]
    assert primary["duplicated"] == len(twice & by_primary)
    assert summary["mta"]["secondary"]["duplicated"] == len(twice & by_secondary)
    report_md = (run_dir / "report.md").read_text()
    assert (f"| primary | (all) | {primary['accepted']} | {primary['delivered']} | "
            f"{primary['duplicated']} |") in report_md  # fmt: skip
    assert m["lost"] == 0
    assert m["attempted"] == 40
    assert m["received_unique"] == len(copies)
    assert summary["mta"]["primary"]["paths"]["other-mx"]["receipts"] == sum(
        1 for r in receipts if r["sink"] == "other-mx" and r["msg_id"] in by_primary
    )
    # Queue drain after the restart, recounted: the last first delivery of what the
    # primary held through the outage, from the moment it was back.
    (start,) = [f for f in read_csv(run_dir / "faults-primary.csv") if f["state"] == "stop"]
    accepted_at = {a["msg_id"]: float(a["end"]) for a in attempts
                   if a["outcome"] == "accepted" and a["server"] == "primary"}  # fmt: skip
    first = {mid: min(float(r["time"]) for r in receipts if r["msg_id"] == mid) for mid in copies}
    onset, back = float(abort["time"]), float(start["time"])
    held_then_sent = [first[mid] for mid, t in accepted_at.items()
                      if t < onset and first.get(mid, 0) >= back]  # fmt: skip
    drain = summary["mta"]["primary"]["drain_s"]
    if held_then_sent:
        assert drain == pytest.approx(max(held_then_sent) - back, abs=1e-5)
    else:
        assert drain is None


def test_fault_proxy_in_front_of_a_postfix_instance(run_dir):
    """The proxy starts before the MTA it fronts (MTAs start after the sinks they relay
    to), so the MTA's port is chosen first. A drop at the proxy cuts the client after
    Postfix has taken the message: the client counts it failed (no retry after the dot),
    Postfix delivers it anyway: a phantom the report counts, and nothing is lost."""
    import yaml

    scenario = yaml.safe_load((REPO / "scenarios" /
                               "postfix-pair.yaml").read_text())  # fmt: skip
    scenario["servers"].insert(0, {"name": "edge", "priority": 5, "local": True,
                                   "sink": {"mode": "proxy", "upstream": "primary"}})  # fmt: skip
    scenario["routing"]["servers"] = ["edge", "secondary"]
    scenario["campaign"].update(schedule=[{"duration_s": 4, "rate": 10}], drain_s=6)
    scenario["faults"] = [{"at": 1, "target": "edge", "kind": "drop", "duration": 1.5}]
    scenario["slo"] = ["lost == 0"]
    path = run_dir.parent / "edge.yaml"
    path.write_text(yaml.safe_dump(scenario))
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    receipts = downstream_receipts(run_dir)
    copies = Counter(r["msg_id"] for r in receipts)
    cut = [
        r for r in read_csv(run_dir / "proxy-edge.csv") if r["event"] == "message" and r["cause"]
    ]
    assert cut, "the drop cut messages after their final dot"
    m = summary["messages"]
    attempts = read_csv(run_dir / "attempts.csv")
    failed = {a["msg_id"] for a in attempts if a["final"] == "1" and a["outcome"] != "accepted"}
    taken_then_cut = {r["msg_id"] for r in cut if r["code"] == "250"}
    assert taken_then_cut, "Postfix answered 250 to messages the drop cut"
    assert taken_then_cut <= set(copies)  # Postfix delivered what it took
    assert m["phantom"] == len(failed & set(copies)) >= len(taken_then_cut & failed) > 0
    assert m["duplicates"] == sum(1 for n in copies.values() if n > 1)
    assert m["lost"] == 0
    assert m["received_unique"] == len(copies) == 40
    (failover,) = summary["failovers"]
    assert (failover["target"], failover["kind"]) == ("edge", "drop")


def test_ctrl_c_mid_drill_stops_both_instances_and_reports_what_they_held(run_dir):
    """Interrupted while the primary is stopped with mail inside: both instances are
    stopped (never left running), and what was still queued is stranded, not lost."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=20", "--set", "faults.0.at=1",
         "--set", "faults.0.duration=30",
         "--set", "servers.4.sink.behaviours=[{kind: latency, stages: [ack], ms: 3000}]"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stopped = run_dir / "faults-primary.csv"  # created at set-up; the stop adds its row
    deadline = time.time() + 60
    while not (stopped.exists() and ",start," in stopped.read_text()):
        if time.time() > deadline or proc.poll() is not None:
            proc.send_signal(signal.SIGINT)  # the run's own stop takes its Postfix down too
            out, err = proc.communicate(timeout=90)
            pytest.fail(f"the primary was not stopped before the Ctrl-C: {out}{err}")
        time.sleep(0.05)
    time.sleep(1.0)  # the primary stopped, the secondary taking mail
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == EXIT_PARTIAL, out + err
    assert no_postfix_left(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True
    stuck = {r["msg_id"] for p in run_dir.glob("mta-queue-*.csv") for r in read_csv(p)}
    received = {r["msg_id"] for r in downstream_receipts(run_dir)}
    attempts = read_csv(run_dir / "attempts.csv")
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    m = summary["messages"]
    assert m["stranded"] == len((accepted - received) & stuck)
    assert m["lost"] == len(accepted - received - stuck) == 0


def test_a_maildrill_killed_by_sigkill_leaves_no_postfix_running(run_dir):
    """`postfix start` leaves its master a child of init, out of reach of the signal that
    stops maildrill's children when it dies: each instance's guard (loadtest.mta_guard)
    stops it instead."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(postfix_running(run_dir)) == 2, 60, step=0.2)
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: postfix_running(run_dir) == [], 30, step=0.2)
    finally:
        proc.kill()
        proc.wait(10)
        for name in postfix_running(run_dir):  # the instances this test's run started
            subprocess.run([postfix_binary(), "-c", str(run_dir / name / "etc"), "abort"],
                           capture_output=True, timeout=30)  # fmt: skip


def test_an_instance_that_cannot_start_fails_the_run_and_stops_the_other(run_dir):
    """The secondary's port is taken: set-up fails with exit 2 naming it, and the
    primary, already running, is stopped (never left behind)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = drill(run_dir, f"servers.1.port={port}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"postfix secondary: port {port} is in use" in done.stderr
    assert no_postfix_left(run_dir)
    assert "daemon started" in (run_dir / "postfix-primary" / "maillog").read_text()


def test_mail_the_mtas_cannot_hand_on_is_stranded_not_lost(run_dir):
    """Load shared by both MTAs (weighted). The primary's delivery agent dies on a bad time
    value (`postfix check` lets it through); downstream defers the secondary's every
    session from its start (a steady behaviour, no race with the first message). Both
    keep all they accepted queued: stranded, not lost; the run says why the primary's
    delivery agent died, from the instance's log."""
    done = drill(
        run_dir, "campaign.schedule.0.duration_s=3", "campaign.drain_s=2", "faults=[]",
        "routing.policy=weighted", "servers.0.postfix.settings={smtp_connect_timeout: banana}",
        *(f"servers.{i}.sink.behaviours=[{{kind: reject, stage: connect, code: 421, "
          "enhanced: 4.3.2}]" for i in (2, 3, 4)),
        "slo=[lost == 0]",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_postfix_left(run_dir)
    why = "postfix/smtp: fatal: parameter smtp_connect_timeout: bad time value or unit: banana"
    assert f"postfix primary logged {why}" in done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    (event,) = [e for e in summary["harness"]["events"] if e["event"] == "mta_log_troubles"]
    assert (event["mta"], event["lines"]) == ("primary", [why])
    attempts = read_csv(run_dir / "attempts.csv")
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    assert downstream_receipts(run_dir) == []
    m = summary["messages"]
    assert m["accepted"] == len(accepted) == 90
    assert m["received_unique"] == 0
    for name in ("primary", "secondary"):
        stuck = {r["msg_id"] for r in read_csv(run_dir / f"mta-queue-{name}.csv")}
        by_it = {a["msg_id"] for a in attempts
                 if a["outcome"] == "accepted" and a["server"] == name}  # fmt: skip
        assert by_it, f"the weighted policy sent {name} its share"
        # All it accepted is still inside (with, maybe, a message whose 250 the client
        # timed out waiting for: the client's count decides, the queue tells where it is).
        assert by_it <= stuck
        assert summary["mta"][name]["stranded"] == len(by_it)
    stuck = {r["msg_id"] for p in run_dir.glob("mta-queue-*.csv") for r in read_csv(p)}
    assert m["stranded"] == len(accepted & stuck) == 90
    assert m["lost"] == 0


def test_a_daemon_dead_at_start_fails_a_strict_preflight(run_dir):
    """The queue manager dies at start on a bad value: pre-flight says so before any load,
    and strict_preflight stops the run there (exit 2), both instances stopped."""
    done = drill(run_dir, "servers.0.postfix.settings={queue_run_delay: banana}",
                 "strict_preflight=true")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    why = "postfix/qmgr: fatal: parameter queue_run_delay: bad time value or unit: banana"
    assert f"pre-flight WARNING: postfix primary logged {why}" in done.stderr
    assert f"pre-flight check failed (strict_preflight): postfix primary logged {why}" in (
        done.stderr
    )
    assert no_postfix_left(run_dir)
    assert not (run_dir / "attempts.csv").exists() or read_csv(run_dir / "attempts.csv") == []


def test_a_stop_that_fails_fails_the_run(run_dir):
    """The primary's master process is gone before its `mta-stop` is due: `postfix stop`
    fails, so the drill would run without its outage; the run stops and exits 2."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=8", "--set", "faults.0.at=4",
         "--set", "faults.0.duration=2", "--set", "campaign.drain_s=4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_until(lambda: (run_dir / "run.json").exists(), 60, step=0.02)
    t0 = json.loads((run_dir / "run.json").read_text())["t0"]
    master = run_dir / "postfix-primary" / "queue" / "pid" / "master.pid"
    os.kill(int(master.read_text().split()[0]), signal.SIGKILL)
    assert time.time() < t0 + 3.5, "the machine is too slow to kill the master before the fault"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert "fault mta-stop on primary at 4 s did not start: postfix stop of primary failed" in err
    assert "SLOs PASSED" not in out + err
    harness = json.loads((run_dir / "harness.json").read_text())
    assert [e["kind"] for e in harness["events"] if e["event"] == "fault_failed"] == ["mta-stop"]
    # The dead master's daemons notice it and leave.
    assert wait_until(lambda: no_postfix_left(run_dir), 30, step=0.2)
