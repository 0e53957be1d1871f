"""Another sender into `maildrill sinks`, then `maildrill report` on its directory: real
sinks, a test client as the sender, a fault through the control API; every figure the
report prints checked against a count of the receipts and faults journals made here."""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    child_pids,
    connect_refused,
    control,
    message,
    read_csv,
    wait_until,
)

pytestmark = pytest.mark.slow

SCENARIO = """\
name: external-sender
description: two sinks for another sender
servers:
  - {name: primary, priority: 10, local: true}
  - {name: secondary, priority: 20, local: true}
campaign:
  streams: [{name: promotional}]
  schedule: [{duration_s: 120, rate: 1}]
"""
ONLY_MESSAGE_ID = "<only-message-id@platform.test>"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.cli", *args]


ENV = dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`maildrill sinks` in a process of its own; killed by its PID if still running."""
    scenario = tmp_path / "external.yaml"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        cli("sinks", str(scenario), "--out", str(tmp_path / "out")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def send(port: int, msg_id: str, text: str | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("news@platform.test", ["rcpt@example.invalid"], text or message(msg_id))


def only_message_id() -> str:
    """A message as many platforms send it: a Message-ID, no X-Maildrill-Id."""
    return (
        "From: news@platform.test\r\nTo: rcpt@example.invalid\r\nSubject: hello\r\n"
        f"Message-ID: {ONLY_MESSAGE_ID}\r\n\r\nHello.\r\n"
    )


def longest_gap(times: list[float], start: float, stop: float) -> float:
    edges = [start, *sorted(t for t in times if start <= t <= stop), stop]
    return max(b - a for a, b in itertools.pairwise(edges))


def test_report_of_another_senders_run_counts_what_the_sinks_journaled(tmp_path, sinks):
    out = tmp_path / "out"
    assert sinks.stdout is not None
    ready, _, _ = select.select([sinks.stdout], [], [], 30)
    assert ready, "no ready line from maildrill sinks"
    servers = {s["name"]: s for s in json.loads(sinks.stdout.readline())["sinks"]}
    primary, secondary = servers["primary"], servers["secondary"]
    api = f"http://127.0.0.1:{primary['control_port']}/faults"

    # Before the fault: the primary takes four, one of them known by its Message-ID alone.
    for msg_id in ("ext-1", "ext-2", "ext-dup"):
        send(primary["port"], msg_id)
    send(primary["port"], "", only_message_id())
    status, started = control(api, primary["control_token"], "POST", {"kind": "down"})
    assert status == 201, started
    assert connect_refused(primary["port"])
    # During it: the platform fails over, and sends two messages a second time.
    for msg_id in ("ext-3", "ext-dup"):
        send(secondary["port"], msg_id)
    send(secondary["port"], "", only_message_id())
    send(secondary["port"], "ext-4")
    status, _ = control(f"{api}/{started['id']}", primary["control_token"], "DELETE")
    assert status == 200
    assert wait_until(lambda: not connect_refused(primary["port"]), timeout=10)
    for msg_id in ("ext-5", "ext-6"):  # and back
        send(primary["port"], msg_id)
    sinks.send_signal(signal.SIGTERM)
    sinks.communicate(timeout=20)
    assert not list(out.glob("attempts*.csv"))

    # The independent count, from the journals as written.
    receipts = {name: read_csv(out / f"receipts-{name}.csv") for name in servers}
    times = {name: [float(r["time"]) for r in rows] for name, rows in receipts.items()}
    every = sorted(t for ts in times.values() for t in ts)
    faults = read_csv(out / "faults-primary.csv")
    (onset,) = [float(r["time"]) for r in faults if r["kind"] == "down" and r["state"] == "start"]
    (clear,) = [float(r["time"]) for r in faults if r["kind"] == "down" and r["state"] == "stop"]
    harness = out / "harness.json"
    journaled = [float(r["time"]) for f in out.glob("*.csv") for r in read_csv(f)]
    t0 = json.loads(harness.read_text())["t0"] if harness.exists() else min(journaled)
    keys = [r["msg_id"] or r["message_id"] for rows in receipts.values() for r in rows]
    copies = {k: keys.count(k) for k in keys}
    assert len(keys) == 10  # the sinks took every message sent
    assert len(copies) == 8
    failover = min(t for t in times["secondary"] if t >= onset) - onset
    failback = min(t for t in times["primary"] if t >= clear) - clear
    gap = {name: longest_gap(ts, onset, clear) for name, ts in times.items()}

    report = subprocess.run(
        cli("report", str(out)), capture_output=True, text=True, env=ENV, timeout=120
    )
    assert report.returncode == 0, report.stderr  # no scenario.yaml's SLOs to fail
    printed = report.stdout
    numbers = r"(-?[0-9.]+|None)"

    def figures(pattern: str) -> list[float]:
        match = re.search(pattern, printed)
        assert match, (pattern, printed)
        return [float(x) for x in match.groups()]

    approx = pytest.approx
    total = figures(
        rf"received: {numbers} receipts, {numbers} messages, {numbers} duplicates "
        rf"\({numbers} extra copies; {numbers} known by Message-ID alone, {numbers} receipts "
        rf"with no id\); longest gap {numbers} s"
    )
    dupes = sum(1 for n in copies.values() if n > 1)
    overall = longest_gap(every, every[0], every[-1])
    assert total == approx([10, 8, dupes, 2, 1, 0, overall], abs=1e-6)
    assert dupes == 2  # ext-dup, and the message known by its Message-ID
    for name, ts in times.items():
        line = figures(
            rf"\n  {name}: {numbers} receipts \({numbers} dropped\), first {numbers} s, "
            rf"last {numbers} s, longest gap {numbers} s"
        )
        expected = [len(ts), 0, min(ts) - t0, max(ts) - t0, longest_gap(ts, every[0], every[-1])]
        assert line == approx(expected, abs=1e-6), name
    fault = figures(
        rf"fault down on primary at {numbers} s: first receipt elsewhere after {numbers} s, "
        rf"first receipt back after {numbers} s, longest gap {numbers} s \(per server: "
        rf"primary {numbers} s, secondary {numbers} s\)"
    )
    assert fault == approx(
        [round(onset - t0, 2), failover, failback, longest_gap(every, onset, clear),
         gap["primary"], gap["secondary"]], abs=1e-6,
    )  # fmt: skip
    assert gap["primary"] == approx(clear - onset, abs=1e-6)  # nothing at the primary
    assert "Not measured: planned, attempted, accepted, failed, lost," in printed

    # The report's tables say the same (3 decimals: half the last digit, and the noise of
    # times subtracted in another order, which can round 0.0014999 up to 0.002).
    table_abs = 5e-4 + 1e-6
    md = (out / "report.md").read_text()
    for name, ts in times.items():
        row = re.search(rf"^\| {name} \| (\d+) \| 0 \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|$",
                        md, re.M)  # fmt: skip
        assert row, name
        assert [float(x) for x in row.groups()] == approx(
            [len(ts), min(ts) - t0, max(ts) - t0, longest_gap(ts, every[0], every[-1])],
            abs=table_abs,
        )
    row = re.search(r"^\| primary \| down \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) "
                    r"\| [0-9.a-z/]+ \| ([0-9.]+) \|", md, re.M)  # fmt: skip
    assert row
    assert [float(x) for x in row.groups()] == approx(
        [onset - t0, clear - t0, failover, failback, longest_gap(every, onset, clear)],
        abs=table_abs,
    )
    assert "| received more than once | 2 |" in md
    series = read_csv(out / "series" / "received.csv")
    for name, ts in times.items():
        assert sum(int(r["received"]) for r in series if r["server"] == name) == len(ts)


def test_a_sink_that_dies_fails_maildrill_sinks(tmp_path):
    """A worker of a `processes: 2` sink killed: the sinks stop on it, not on a signal. The
    run is partial (the sender's mail was refused from then on) and `maildrill sinks` does
    not exit 0, as `python -m sinks` does not."""
    scenario = tmp_path / "external.yaml"
    scenario.write_text(
        SCENARIO.replace("{name: primary, priority: 10, local: true}",
                         "{name: primary, priority: 10, local: true, sink: {processes: 2}}")
    )  # fmt: skip
    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli("sinks", str(scenario), "--out", str(out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no ready line from maildrill sinks"
        assert json.loads(proc.stdout.readline())["sinks"][0]["processes"] == 2
        assert wait_until(lambda: len(child_pids(proc.pid)) == 2, timeout=10)
        os.kill(child_pids(proc.pid)[0], signal.SIGKILL)  # one of the primary's workers
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    harness = json.loads((out / "harness.json").read_text())
    assert len(harness["sink_deaths"]) == 1
    assert "worker" in harness["sink_deaths"][0]["error"]
    assert (harness["partial"], harness["stopped_by"]) == (True, None)
    assert proc.returncode == 3, err  # partial, as an interrupted `maildrill run`
    assert "exited with -9" in err.splitlines()[-1]
