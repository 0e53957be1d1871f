"""`maildrill run` with its server named by DNS (`host: smtp.shop.test`, an A record of the
run's zone) and a scheduled `records` switch of that name from one loopback sink to
another: the Locust sender looks the name up through the run's DNS server (--dns-server)
and follows the switch within one TTL; recounted from the attempts journal's addr and
dns_ttl, the sinks' receipts and faults-dns.csv. The pre-flight check and the prober reach
the server at its address (no `unreachable` flag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.drills.run_helpers import maildrill
from tests.helpers import LATE_S, port_free_on, read_csv

OLD, NEW = "127.0.0.11", "127.0.0.12"

pytestmark = pytest.mark.slow

SCENARIO = """\
name: dns-routing
servers:
  - {{name: primary, host: smtp.shop.test, port: {port}}}
  - {{name: old, local: true, host: {old}, port: {port}}}
  - {{name: new, local: true, host: {new}, port: {port}}}
routing: {{servers: [primary]}}
campaign:
  schedule: [{{duration_s: 3, rate: 20}}]
  drain_s: 1
users: 2
dns:
  zones:
    shop.test:
      smtp: {{A: {old}, ttl: 1}}
faults:
  - {{at: 1.5, target: dns, kind: records, records: {{smtp.shop.test: {{A: {new}, ttl: 1}}}}}}
"""


def test_a_run_follows_the_record_of_its_server_named_by_dns(tmp_path: Path):
    path = tmp_path / "dns-routing.yaml"
    path.write_text(SCENARIO.format(port=port_free_on(OLD, NEW), old=OLD, new=NEW))
    run_dir = tmp_path / "run"
    done = maildrill("run", str(path), "--out", str(run_dir), timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = read_csv(run_dir / "attempts.csv")
    switched = next(
        float(r["time"]) for r in read_csv(run_dir / "faults-dns.csv") if r["state"] == "start"
    )
    by_addr: dict[str, set[str]] = {OLD: set(), NEW: set()}
    for a in attempts:
        assert (a["server"], a["outcome"], a["dns_name"], a["dns_ttl"]) == (
            "primary", "accepted", "smtp.shop.test", "1",
        )  # fmt: skip
        by_addr[a["addr"]].add(a["msg_id"])
        if float(a["start"]) > switched + 1 + LATE_S:  # one TTL after the switch
            assert a["addr"] == NEW
    assert len(attempts) == 60
    assert by_addr[NEW], "the senders followed the switch"
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-old.csv")} == by_addr[OLD]
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-new.csv")} == by_addr[NEW]
    preflight = json.loads((run_dir / "preflight.json").read_text())
    assert preflight["flags"] == []
    probes = [r for r in read_csv(run_dir / "probes.csv") if r["server"] == "primary"]
    assert probes
    assert {r["ok"] for r in probes} == {"1"}
