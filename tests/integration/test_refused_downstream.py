"""A real run where a backup MX's upstream refuses queued mail for good: the summary's
`refused_downstream` and `lost` recounted from the journals alone (attempts, receipts,
refusals, the relay journal), not from the analysis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_csv

# The primary is down from 1 s to 3 s (mail queues at the backup), then refuses every RCPT
# with 550 from 3 s to 5 s: the backup's forwards in that window bounce.
SCENARIO = """\
name: refused-downstream
description: a backup MX whose upstream refuses its queue for good
servers:
  - {name: primary, priority: 10, local: true}
  - name: backup
    priority: 20
    local: true
    sink: {mode: backup-mx, upstream: primary, forward_backoff_s: 0.2,
           forward_max_backoff_s: 0.5}
routing:
  policy: failover
  circuit: {threshold: 3, cooldown_s: 1}
campaign:
  seed: 24
  schedule: [{duration_s: 6, rate: 20}]
  drain_s: 3
users: 5
faults:
  - {at: 1, target: primary, kind: down, duration: 2}
  - {at: 3, target: primary, kind: reject, duration: 2, stage: rcpt, code: 550,
     enhanced: 5.1.1}
slo: [refused_downstream == 0]
"""


@pytest.mark.slow
def test_mail_a_backup_mx_queued_and_its_upstream_refused_is_not_lost(tmp_path: Path) -> None:
    scenario = tmp_path / "refused-downstream.yaml"
    scenario.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", str(scenario), "--out", str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # the SLO: something was refused downstream
    assert "FAIL  refused_downstream == 0" in out
    m = json.loads((run_dir / "summary.json").read_text())["messages"]

    accepted = {a["msg_id"] for a in read_csv(run_dir / "attempts.csv")
                if a["outcome"] == "accepted"}  # fmt: skip
    receipts = [r for f in run_dir.glob("receipts-*.csv") for r in read_csv(f)]
    delivered = {r["msg_id"] for r in receipts if r["outcome"] != "queued"}
    relay = read_csv(run_dir / "relay-backup.csv")
    released = {e["msg_id"] for e in relay if e["event"] in ("forwarded", "bounced")}
    held = {r["msg_id"] for r in receipts if r["outcome"] == "queued"} - released
    bounced = {e["msg_id"] for e in relay if e["event"] == "bounced"}
    refusals = [r for f in run_dir.glob("refusals-*.csv") for r in read_csv(f)]
    fives = {r["msg_id"] for r in refusals if r["code"].startswith("5") and r["msg_id"]}
    missing = accepted - delivered - held
    assert bounced, "the upstream refused some of the backup's queue"
    assert m["refused_downstream"] == len(missing & (bounced | fives)) > 0
    assert m["lost"] == len(missing - bounced - fives)
    assert m["stranded"] == len(accepted & held - delivered)
    assert m["unverified"] == 0  # every server here is a sink maildrill sees
