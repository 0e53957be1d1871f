"""Bundled drills end to end whose figures need their own checks (backup MX, a hang)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.drills.run_helpers import (
    maildrill,
    receipts,
)
from tests.helpers import (
    LATE_S,
    assert_delays,
    read_csv,
)

pytestmark = pytest.mark.slow


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
