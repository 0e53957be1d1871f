"""`maildrill sinks` plays a scenario's DNS faults on the DNS server it serves in-process:
the scheduled SERVFAIL seen by a resolver inside its window only, a live command through
the DNS control API in the ready line (the sinks' token), and both in harness.json and
faults-dns.csv."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from sinks.control_client import ControlClient
from tests.helpers import maildrill_sinks, read_csv

SCENARIO = """\
name: sinks-dns-faults
servers:
  - {name: primary, priority: 10, local: true}
campaign:
  schedule: [{duration_s: 60, rate: 1}]
dns:
  zones:
    shop.test: {mx1: {A: 127.0.0.11}, mx2: {A: 127.0.0.12}}
faults:
  - {at: 0.5, target: dns, kind: servfail, duration: 0.8, names: [mx1.shop.test]}
"""


def rcode(address: tuple[str, int], name: str) -> tuple[float, float, str]:
    """(sent, received, the answer's rcode) of one A query over UDP."""
    sent = time.time()
    answer = dns.query.udp(dns.message.make_query(name, "A"), address[0], 2.0, address[1])
    return sent, time.time(), dns.rcode.to_text(answer.rcode())


def test_maildrill_sinks_plays_dns_faults_and_takes_commands(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    with maildrill_sinks(path, out) as sinks:
        t0, ready = sinks.ready["t0"], sinks.ready["dns"]
        address = (ready["host"], ready["port"])
        seen = []
        while time.time() < t0 + 1.6:
            seen.append(rcode(address, "mx1.shop.test"))
            time.sleep(0.02)
        token = sinks.ready["sinks"][0]["control_token"]
        control = ControlClient.on_port(ready["control_port"], token)
        live = control.call("POST", "/faults", {"kind": "nxdomain", "names": ["mx2.shop.test"]})
        assert rcode(address, "mx2.shop.test")[2] == "NXDOMAIN"
        sinks.stop()
    start, end = t0 + 0.5, t0 + 1.3
    assert {c for s, r, c in seen if r < start or s > end} == {"NOERROR"}
    assert {c for s, r, c in seen if s > start and r < end} == {"SERVFAIL"}
    harness = json.loads((out / "harness.json").read_text())
    assert [(f["kind"], f["status"]) for f in harness["faults"]] == [
        ("servfail", "started dns-servfail-1")
    ]
    rows = [(r["fault_id"], r["state"], r["origin"]) for r in read_csv(out / "faults-dns.csv")]
    assert rows == [
        ("dns-servfail-1", "start", "schedule"),
        ("dns-servfail-1", "stop", "schedule"),
        (live["id"], "start", "command"),  # in force to the end: no stop row, as a sink's
    ]
