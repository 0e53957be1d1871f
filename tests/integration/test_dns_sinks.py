"""`maildrill sinks` with a `dns:` section: the run's DNS server beside the sinks, its
address in the ready line, the zones kept in the run directory as they were served."""

from __future__ import annotations

import json
from pathlib import Path

from maildrill.dns.resolver import Resolver, Status
from tests.helpers import maildrill_sinks

SCENARIO = """\
name: dns-sinks
servers:
  - {name: primary, local: true}
campaign:
  schedule: [{duration_s: 60, rate: 1}]
dns:
  zones:
    shop.test:
      MX: 10 mx1.shop.test
      TXT: v=spf1 ip4:127.0.0.11 -all
      mx1: {A: 127.0.0.11}
    127.in-addr.arpa:
      127.0.0.11: {PTR: mx1.shop.test}
"""


def test_maildrill_sinks_serves_the_zones_and_says_where(tmp_path: Path) -> None:
    scenario = tmp_path / "dns.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    with maildrill_sinks(scenario, out) as run:
        host, port = run.ready["dns"]["host"], run.ready["dns"]["port"]
        assert host == "127.0.0.1"
        assert port not in {s["port"] for s in run.ready["sinks"]}
        resolver = Resolver(host, port, timeout=5.0)
        assert resolver.mx("shop.test").mx()[0].host == "mx1.shop.test"
        assert resolver.ptr("127.0.0.11").records == ("mx1.shop.test",)
        assert resolver.a("mx9.shop.test").status is Status.NXDOMAIN
        err = run.stop()
    assert run.proc.returncode == 0, err
    assert f"DNS served on {host}:{port}" in err
    assert sorted(p.name for p in (out / "dns").iterdir()) == [
        "127.in-addr.arpa.zone",
        "shop.test.zone",
    ]
    assert "mx1.shop.test. 300 IN A 127.0.0.11" in (out / "dns" / "shop.test.zone").read_text()
    events = json.loads((out / "harness.json").read_text())["events"]
    assert [(e["host"], e["port"]) for e in events if e["event"] == "dns_ready"] == [(host, port)]
    # stopped with the sinks: nothing answers there any more
    assert Resolver(host, port, timeout=0.5).a("mx1.shop.test").status is Status.TEMPERROR
