"""Health probes: the prober against real sinks, its journal, and the availability analysis."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from loadtest import prober
from loadtest.analysis import fault_windows, probes
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.journals import load_kind
from maildrill.records import ProbeRecord
from tests.helpers import LATE_S, REPO, read_csv, wait_until

SLACK_S = LATE_S  # event-loop scheduling on a busy machine, on top of one interval


def probe_during(sinks, names: list[str], interval_s: float, timeout_s: float, script) -> Path:
    """Run the prober against `names` while `script(sinks)` (blocking) runs in a thread."""
    journal = sinks.journal_dir / "probes.csv"
    targets = [prober.ProbeTarget(n, "127.0.0.1", sinks.port(n)) for n in names]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(prober.run(targets, interval_s, timeout_s, journal, stop))
        await asyncio.to_thread(script, sinks)
        stop.set()
        await task

    asyncio.run(main())
    return journal


def one_fault(sinks, target: str, kind: str, duration: float) -> FaultWindow:
    (window,) = [
        w for w in fault_windows.fault_windows(load_kind(sinks.journal_dir, "faults"))
        if w.target == target
    ]  # fmt: skip
    assert (window.kind, window.cleared is not None) == (kind, True)
    assert duration - 0.002 <= window.cleared - window.onset < duration + LATE_S
    return window


def test_availability_timeline_matches_the_faults_journal_within_one_interval(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]})
    interval = 0.2

    def outage(sinks) -> None:
        import time

        time.sleep(0.5)
        status, _ = sinks.control("primary", "POST", "/faults", {"kind": "down", "duration": 1.0})
        assert status == 201
        time.sleep(2.0)

    probe_during(sinks, ["primary", "secondary"], interval, 0.5, outage)
    window = one_fault(sinks, "primary", "down", 1.0)
    frame, damage = probes.load(sinks.journal_dir)
    assert damage == {}
    seen = probes.availability(frame, t0=0.0)

    (down,) = seen["primary"].down
    assert down.end_s is not None
    assert window.onset - SLACK_S <= down.start_s <= window.onset + interval + SLACK_S
    assert window.cleared <= down.end_s <= window.cleared + interval + SLACK_S
    assert down.outcomes == {"refused": down.probes}
    # Up for the share of the probing that was not the outage, give or take a probe at
    # each of its two edges.
    primary = frame[frame["server"] == "primary"]
    span = primary["time"].iloc[-1] - primary["time"].iloc[0] + interval
    up_share = 1 - (window.cleared - window.onset) / span
    assert seen["primary"].availability == pytest.approx(up_share, abs=2 / len(primary))
    assert seen["secondary"].availability == 1.0
    assert seen["secondary"].down == []

    detection = probes.monitor_detection_s(window, frame)
    recovery = probes.monitor_recovery_s(window, frame)
    assert detection is not None
    assert 0 <= detection <= interval + SLACK_S
    assert recovery is not None
    assert 0 <= recovery <= interval + SLACK_S
    # Probes of one server never overlap, come at most once a tick and miss none (a late
    # one waits for the next tick, so gaps are an interval and what the loop ran late).
    secondary = frame[frame["server"] == "secondary"]
    assert (secondary["time"].to_numpy()[1:] >= secondary["end"].to_numpy()[:-1]).all()
    span = secondary["time"].iloc[-1] - secondary["time"].iloc[0]
    assert len(secondary) - 1 <= (span + LATE_S) / interval
    assert secondary["time"].diff().max() < interval + LATE_S


def test_a_hang_is_seen_as_greeting_timeouts_one_timeout_late(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    # A timeout well above the slack: detection one timeout late (not two) stays told
    # apart even when a loaded machine runs both the probe's start and its timer late
    # (four test workers on two cores did: the bound below allows two slacks).
    interval, timeout = 0.1, 1.0

    # Long enough for a probe to connect and time out inside it: a probe held at the door
    # gets its banner at the clear if it is still waiting (the hang freezes, then resumes).
    duration = 2.5

    def hang(sinks) -> None:
        import time

        time.sleep(0.3)
        sinks.control("primary", "POST", "/faults", {"kind": "hang", "duration": duration})
        time.sleep(duration + 0.6)

    journal = probe_during(sinks, ["primary"], interval, timeout, hang)
    window = one_fault(sinks, "primary", "hang", duration)
    frame, _ = probes.load(sinks.journal_dir)
    failed = [r for r in read_csv(journal) if r["ok"] == "0"]
    assert failed
    # New connections meet no greeting; a probe that was mid-session at the onset meets no
    # reply to its EHLO (the hang freezes open sessions too).
    assert {r["outcome"] for r in failed} == {"timeout"}
    assert ("greeting", "timeout") in {(r["phase"], r["outcome"]) for r in failed}
    assert {r["phase"] for r in failed} <= {"greeting", "ehlo"}
    detection = probes.monitor_detection_s(window, frame)
    assert detection is not None
    assert timeout - SLACK_S <= detection <= timeout + interval + 2 * SLACK_S < 2 * timeout
    assert probes.monitor_recovery_s(window, frame) is not None


def test_the_journal_has_a_row_per_probe_with_the_documented_columns(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    journal = sinks.journal_dir / "probes.csv"
    interval, timeout = 0.05, 0.5
    took: list[float] = []

    def four_probes(_) -> None:
        import time

        started = time.monotonic()
        assert wait_until(lambda: journal.exists() and len(read_csv(journal)) >= 4, 10, 0.01)
        took.append(time.monotonic() - started)

    probe_during(sinks, ["mx"], interval, timeout, four_probes)
    rows = read_csv(journal)
    assert list(rows[0]) == list(ProbeRecord.header())
    assert 4 <= len(rows) <= took[0] / interval + 2  # one a tick (and the first at once)
    assert {(r["ok"], r["phase"], r["code"], r["outcome"], r["error"]) for r in rows} == {
        ("1", "quit", "250", "ok", "")
    }
    # Milliseconds: more than nothing, less than the four phases' timeouts.
    assert all(0 < float(r["latency_ms"]) < 4 * timeout * 1000 for r in rows)
    # Probes are sessions like any other; they leave nothing in the receipts journal.
    assert read_csv(sinks.journal_dir / "receipts-mx.csv") == []


# -- the analysis on hand-made journals -----------------------------------------------------


def frame_of(rows: list[tuple[float, str, int, str]]) -> pd.DataFrame:
    """(time, server, ok, outcome) rows; every probe takes 2 ms."""
    df = pd.DataFrame(rows, columns=["time", "server", "ok", "outcome"])
    df["latency_ms"] = 2.0
    df["end"] = df["time"] + 0.002
    df["ok"] = df["ok"].astype(bool)
    return df


def test_down_intervals_run_from_the_first_failure_to_the_next_pass():
    rows = [(t / 10, "p", 0 if 3 <= t < 6 or t >= 9 else 1, "refused") for t in range(11)]
    seen = probes.availability(frame_of(rows), t0=0.0)["p"]
    assert (seen.probes, seen.passed, seen.availability) == (11, 6, round(6 / 11, 6))
    first, last = seen.down
    assert (first.start_s, first.noticed_s, first.end_s) == (0.3, 0.302, 0.6)
    assert first.duration_s == pytest.approx(0.3)
    assert (first.probes, first.outcomes) == (3, {"refused": 3})
    assert (last.start_s, last.end_s, last.duration_s) == (0.9, None, None)
    assert seen.down_s == pytest.approx(0.3)


def test_monitor_timing_per_fault():
    rows = [(t / 10, "p", 0 if 3 <= t < 6 else 1, "refused") for t in range(10)]
    rows += [(t / 10, "s", 1, "ok") for t in range(10)]
    frame = frame_of(rows)
    down = FaultWindow("p", "down", "down-1", onset=0.25, cleared=0.55)
    assert probes.monitor_detection_s(down, frame) == pytest.approx(0.052)
    assert probes.monitor_recovery_s(down, frame) == pytest.approx(0.052)
    # a throttle on s: every probe passed, the monitor never noticed
    throttle = FaultWindow("s", "throttle", "throttle-1", onset=0.2, cleared=0.6)
    assert probes.monitor_detection_s(throttle, frame) is None
    assert probes.monitor_recovery_s(throttle, frame) is None
    # still active at the end: detected, never recovered
    endless = FaultWindow("p", "down", "down-2", onset=0.25, cleared=None)
    assert probes.monitor_recovery_s(endless, frame) is None
    # a failure after the fault cleared is not its detection
    late = FaultWindow("p", "down", "down-3", onset=0.1, cleared=0.2)
    assert probes.monitor_detection_s(late, frame) is None


def test_loading_skips_torn_lines_and_no_journal_means_no_probes(tmp_path):
    empty, damage = probes.load(tmp_path)
    assert empty.empty
    assert damage == {}
    assert probes.summarise(empty, t0=0.0, interval_ms=500, timeout_ms=1000).model_dump() == {
        "interval_ms": None, "timeout_ms": None, "servers": {}
    }  # fmt: skip
    (tmp_path / "probes.csv").write_text(
        ",".join(ProbeRecord.header()) + "\n"
        "10.0,p,1,quit,250,ok,1.5,\n"
        "10.5,p,0,connect,0,refused,0.4,SMTPConnectError: refused\n"
        "10.7,p,garbage\n"
        "11.0,p,1,quit,250,o"  # cut mid-write
    )
    frame, damage = probes.load(tmp_path)
    assert (damage["probes.csv"].unreadable, damage["probes.csv"].torn) == (1, True)
    summary = probes.summarise(frame, t0=10.0, interval_ms=500, timeout_ms=1000)
    assert summary.interval_ms == 500
    assert summary.servers["p"].probes == 2
    assert summary.servers["p"].down[0].end_s is None


# -- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--server", "p=10.0.0.1:25"],
        ["--server", "p=127.0.0.1"],
        ["--server", "p=127.0.0.1:25", "--interval-ms", "0"],
        ["--scenario", str(REPO / "scenarios" / "default.yaml")],
    ],
)
def test_bad_input_exits_2(args, capsys):
    assert prober.main(args) == 2
    assert capsys.readouterr().err.startswith("maildrill prober: ")


@pytest.mark.slow
def test_runs_as_its_own_process_and_stops_on_sigterm(start_sinks, tmp_path):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.prober", "--server", f"mx=127.0.0.1:{sinks.port('mx')}",
         "--interval-ms", "50", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["prober"]["servers"][0]["name"] == "mx"
        assert ready["prober"]["interval_ms"] == 50
        import time

        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    rows = read_csv(tmp_path / "probes.csv")
    assert final["stopped"]["mx"] == len(rows) >= 5


# -- inside `maildrill run` --------------------------------------------------------------


@pytest.mark.slow
def test_a_drill_reports_what_the_prober_saw_next_to_the_faults(tmp_path):
    run_dir = tmp_path / "run"
    short = ["campaign.schedule.0.duration_s=1", "campaign.schedule.1.duration_s=4",
             "campaign.schedule.2.duration_s=1", "faults.0.at=2", "faults.0.duration=1.5",
             "campaign.drain_s=3", "probe_interval_ms=200",
             "servers.1.sink.size_limit=1048576"]  # a pre-flight warning, not fatal  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         *(arg for item in short for arg in ("--set", item))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pre-flight WARNING: secondary: SIZE 1048576" in done.stderr
    assert "health probes every 200 ms: noticed after" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["preflight"]["ok"] is False
    assert [f["code"] for f in summary["preflight"]["flags"]] == ["size-smaller"]

    seen = summary["probes"]
    assert (seen["interval_ms"], seen["timeout_ms"]) == (200, 1000)
    (down,) = seen["servers"]["primary"]["down"]
    (fault,) = summary["failovers"]
    interval = 0.2
    assert fault["onset_s"] - SLACK_S <= down["start_s"] <= fault["onset_s"] + interval + SLACK_S
    assert fault["cleared_s"] <= down["end_s"] <= fault["cleared_s"] + interval + SLACK_S
    assert seen["servers"]["secondary"]["availability"] == 1.0
    assert 0 <= fault["monitor_detection_s"] <= interval + SLACK_S
    assert 0 <= fault["monitor_recovery_s"] <= interval + SLACK_S
    # the prober ran from before the campaign to its end, and stopped cleanly
    assert seen["servers"]["primary"]["first_s"] < 0
    # the campaign's last message is due just before 6 s; the prober runs until the load
    # stops, so its last probe starts within about one interval of that
    assert seen["servers"]["primary"]["last_s"] > 6 - 2 * interval
    assert '"stopped"' in (run_dir / "logs" / "prober.log").read_text()


def test_a_quit_left_unanswered_does_not_hold_the_next_probe_back(tmp_path):
    """A server that answers EHLO and then freezes (a hang beginning between the two):
    the probe is healthy, and its QUIT waits one interval, not the timeout, so the next
    probe, which will see the hang, starts on time (detection one timeout late, not two)."""
    interval, timeout = 0.2, 3.0
    quits: list[float] = []
    opened: list[asyncio.StreamWriter] = []
    ended: list[asyncio.StreamWriter] = []

    async def frozen_at_quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(writer)
        try:
            writer.write(b"220 scripted ESMTP\r\n")
            while line := await reader.readline():
                if line.upper().startswith(b"EHLO"):
                    writer.write(b"250-scripted\r\n250 8BITMIME\r\n")
                elif line.upper().startswith(b"QUIT"):
                    quits.append(time.monotonic())  # and never a reply
                await writer.drain()
        finally:
            writer.close()
            ended.append(writer)

    async def main() -> None:
        server = await asyncio.start_server(frozen_at_quit, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = prober.ProbeTarget("frozen", "127.0.0.1", port)
        stop = asyncio.Event()
        async with server:
            await prober.run([target], interval, timeout, tmp_path / "probes.csv", stop, 1.5)
            # Every session ended (the prober closed its side) before the loop goes.
            assert await asyncio.to_thread(wait_until, lambda: len(ended) == len(opened), 5)
            for writer in ended:
                await writer.wait_closed()

    asyncio.run(main())
    rows = read_csv(tmp_path / "probes.csv")
    # In 1.5 s, one probe a tick or so (each waits one interval on its QUIT); a QUIT held
    # for the timeout would have allowed one at most.
    assert len(rows) >= 3, rows
    assert {(r["ok"], r["phase"], r["outcome"]) for r in rows} == {("1", "ehlo", "ok")}
    gaps = [b - a for a, b in itertools.pairwise(quits)]
    assert max(gaps) < 2 * interval + LATE_S, gaps
