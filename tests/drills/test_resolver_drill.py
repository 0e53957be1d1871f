"""`maildrill run --yes` with a resolver the scenario names (`resolver: 127.0.0.1:PORT`,
`allow_remote: true`, no `dns:` zones): the sender, a Locust worker process (`workers: 1`)
that has the resolver only from the master's plan, looks `smtp.shop.test` up there, not in
a run's DNS server (none is started), and follows a records change made on that resolver
through its own control API while the run sends. The server is the domain's MX set
(`mx: shop.test`), read from that resolver as the file loads: the yes `run` asks for then
is its workers' too (they refused the plan before: c9567d4's abort caught it). The
resolver is a DNS server this test starts on 127.0.0.1 (every answer on 127.0.0.0/8).
Recounted from the journals: attempts.csv's addr and dns_ttl against the sinks' receipts
per address, the resolver's own faults-dns.csv and dns-queries.csv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.control_client import ActiveFault, ControlClient
from tests.helpers import LATE_S, dns_child, port_free_on, read_csv, wait_until

OLD, NEW = "127.0.0.31", "127.0.0.32"
NAME, TTL = "smtp.shop.test", 1
TIMER_S = 1.0  # how late a child's timer may fire on a loaded 2-core machine
TOKEN = "resolver-drill-token"

pytestmark = pytest.mark.slow

SCENARIO = """\
name: named-resolver
allow_remote: true
resolver: 127.0.0.1:{dns_port}
servers:
  - {{mx: shop.test, port: {port}}}  # one server, named {name}: its MX host
  - {{name: old, local: true, host: {old}, port: {port}}}
  - {{name: new, local: true, host: {new}, port: {port}}}
routing: {{servers: [{name}]}}
campaign:
  schedule: [{{duration_s: 3, rate: 20}}]
  drain_s: 1
users: 2
workers: 1
"""


def test_a_run_follows_a_records_change_on_the_resolver_it_names(tmp_path: Path):
    zones = {"shop.test": {"MX": [f"10 {NAME}"], "smtp": {"A": OLD, "ttl": TTL}}}
    with dns_child(zones, tmp_path / "resolver", TOKEN) as (ready, _child):
        control = ControlClient.on_port(ready["control_port"], TOKEN)
        path = tmp_path / "named.yaml"
        path.write_text(SCENARIO.format(dns_port=ready["port"], name=NAME,
                                        port=port_free_on(OLD, NEW), old=OLD, new=NEW))  # fmt: skip
        run_dir = tmp_path / "run"
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(run_dir),
             "--yes"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_until(lambda: (run_dir / "run.json").exists(), timeout=40)
            t0 = json.loads((run_dir / "run.json").read_text())["t0"]
            records = {NAME: {"A": NEW, "ttl": TTL}}
            body = {"kind": "records", "start_at": t0 + 1.5, "records": records}
            fault = ActiveFault.from_json(control.call("POST", "/faults", body))
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err[-2000:]
        changes = read_csv(tmp_path / "resolver" / "faults-dns.csv")
        queries = read_csv(tmp_path / "resolver" / "dns-queries.csv")

    switched = next(
        float(r["time"]) for r in changes if r["fault_id"] == fault.id and r["state"] == "start"
    )
    # The resolver's own timer (a child on a loaded machine) starts the change; the checks
    # below count from the time it journaled, so this bound only says it started then.
    assert t0 + 1.5 <= switched < t0 + 1.5 + TIMER_S
    # No run DNS server: the senders asked the named resolver alone.
    assert not (run_dir / "faults-dns.csv").exists()
    assert "dns" not in json.loads((run_dir / "run.json").read_text())

    attempts = read_csv(run_dir / "attempts.csv")
    assert len(attempts) == 60
    assert {a["worker"] for a in attempts} != {"local"}  # sent by the worker process
    by_addr: dict[str, set[str]] = {OLD: set(), NEW: set()}
    for a in attempts:
        assert (a["server"], a["outcome"], a["dns_name"], a["dns_ttl"]) == (
            NAME, "accepted", NAME, str(TTL),
        )  # fmt: skip
        by_addr[a["addr"]].add(a["msg_id"])
        if float(a["start"]) > switched + TTL + LATE_S:  # one TTL after the change
            assert a["addr"] == NEW
        if a["addr"] == NEW:
            assert float(a["dns_at"]) >= switched
    assert by_addr[OLD], "before the change, mail went to the old address"
    assert by_addr[NEW], "the senders followed the change on the named resolver"
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-old.csv")} == by_addr[OLD]
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-new.csv")} == by_addr[NEW]
    # Each answer the sender used was a question the named resolver journaled.
    asked = [q for q in queries if q["name"] == NAME and q["type"] == "A"]
    assert len(asked) >= len({a["dns_at"] for a in attempts})
    # The pre-flight check and the prober found the server through it too.
    assert json.loads((run_dir / "preflight.json").read_text())["flags"] == []
    probes = [r for r in read_csv(run_dir / "probes.csv") if r["server"] == NAME]
    assert probes
    assert {r["ok"] for r in probes} == {"1"}
