"""`maildrill run` with faults on the run's DNS server (`target: dns`): sent ahead with
their epoch starts, started on the DNS server's clock, followed to harness.json, and their
windows in the summary as faults-dns.csv has them (recounted here from the journal, not
from the analysis), never measured as a failover of a server named dns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.drills.run_helpers import maildrill
from tests.helpers import LATE_S, read_csv

pytestmark = pytest.mark.slow

SCENARIO = """\
name: dns-faults
servers:
  - {name: primary, priority: 10, local: true}
  - {name: secondary, priority: 20, local: true}
routing: {policy: failover}
campaign:
  schedule: [{duration_s: 3, rate: 10}]
  drain_s: 1
users: 2
dns:
  zones:
    shop.test:
      MX: [10 mx1.shop.test, 20 mx2.shop.test]
      mx1: {A: 127.0.0.11}
      mx2: {A: 127.0.0.12}
      smtp: {A: 127.0.0.11, ttl: 5}
faults:
  - {at: 1, target: dns, kind: servfail, duration: 1, names: [mx1.shop.test]}
  - {at: 1.5, target: dns, kind: records, records: {smtp.shop.test: {A: 127.0.0.12, ttl: 5}}}
"""


def test_dns_faults_start_on_the_dns_servers_clock_and_reach_the_summary(tmp_path: Path):
    path = tmp_path / "dns-faults.yaml"
    path.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    done = maildrill("run", str(path), "--out", str(run_dir), timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    t0 = json.loads((run_dir / "run.json").read_text())["t0"]
    harness = json.loads((run_dir / "harness.json").read_text())
    assert [(f["target"], f["kind"], f["status"]) for f in harness["faults"]] == [
        ("dns", "servfail", "started dns-servfail-1"),
        ("dns", "records", "started dns-records-2"),
    ]
    rows = read_csv(run_dir / "faults-dns.csv")
    starts = {r["kind"]: float(r["time"]) - t0 for r in rows if r["state"] == "start"}
    stops = {r["kind"]: float(r["time"]) - t0 for r in rows if r["state"] == "stop"}
    assert {r["origin"] for r in rows} == {"schedule"}
    for kind, at in (("servfail", 1.0), ("records", 1.5)):  # on time, never early
        assert at - 1e-6 <= starts[kind] <= at + LATE_S
    assert stops == {"servfail": pytest.approx(2.0, abs=1e-5)}  # records: to the end
    summary = json.loads((run_dir / "summary.json").read_text())
    windows = [f for f in summary["failovers"] if f["target"] == "dns"]
    assert [(w["kind"], w["onset_s"], w["cleared_s"]) for w in windows] == [
        ("servfail", round(starts["servfail"], 6), round(stops["servfail"], 6)),
        ("records", round(starts["records"], 6), None),
    ]
    for window in windows:
        assert window["onset_source"] == "DNS server journal"
        assert (window["detection_s"], window["failover_s"], window["failback_s"]) == (
            None,
            None,
            None,
        )
    assert "dns" not in summary["throughput"]["per_server"]
    assert (run_dir / "dns-queries.csv").exists()
