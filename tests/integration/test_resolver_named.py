"""A scenario that names its own resolver (`resolver: 127.0.0.1:PORT`, `allow_remote: true`,
no `dns:` zones): the "user's resolver" is a DNS server this test starts itself
(`python -m maildrill.dns` on 127.0.0.1, port 0; every answer on 127.0.0.0/8), never the
system's. The `mx:` servers are the MX set that resolver gives when the file is loaded;
the senders (loadtest.driver + loadtest.client, the process's cache) ask it as they send
and move on when a records change on it drops the preferred MX; `maildrill validate` says a
lookup's failure in one line (exit 2) and `maildrill check --scenario` checks the servers at
the addresses it gives. Recounted from the journals: attempts (server, addr, dns_*), the
sinks' receipts, the resolver's dns-queries.csv."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtest.campaign import MessageFactory
from loadtest.cli import main
from loadtest.client import Sender
from loadtest.dns_route import HostResolver
from loadtest.driver import Driver
from loadtest.scenario import load_scenario
from loadtest.schedule import Dispatcher
from maildrill.journal import RowWriter
from maildrill.records import AttemptRecord
from sinks.control_client import ActiveFault, ControlClient
from tests.helpers import LATE_S, dns_child, drive, port_free_on, read_csv

MX1, MX2 = "127.0.0.21", "127.0.0.22"
TTL = 1
ZONES: dict[str, Any] = {
    "shop.test": {
        "ttl": TTL,
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": MX1},
        "mx2": {"A": MX2},
    }
}
TOKEN = "resolver-named-test-token"


@dataclass
class UserResolver:
    address: tuple[str, int]
    control: ControlClient
    journals: Path

    @property
    def text(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def start(self, **body: Any) -> ActiveFault:
        return ActiveFault.from_json(self.control.call("POST", "/faults", body))

    def stop(self, fault: ActiveFault) -> None:
        self.control.call("DELETE", f"/faults/{fault.id}")

    def queries(self, name: str, rtype: str) -> list[dict[str, str]]:
        rows = read_csv(self.journals / "dns-queries.csv")
        return [r for r in rows if r["name"] == name and r["type"] == rtype]


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserResolver]:
    out = tmp_path_factory.mktemp("user-resolver")
    with dns_child(ZONES, out, TOKEN) as (ready, _child):
        assert ready["host"] == "127.0.0.1"
        control = ControlClient.on_port(ready["control_port"], TOKEN)
        yield UserResolver((ready["host"], ready["port"]), control, out)


@pytest.fixture
def sinks(start_sinks, tmp_path) -> tuple[int, dict[str, Path]]:
    """A sink at MX1 and one at MX2, on one port (each a sinks file of its own)."""
    port = port_free_on(MX1, MX2)
    journals = {}
    for name, host in (("mx1", MX1), ("mx2", MX2)):
        journals[name] = tmp_path / name
        start_sinks({"sinks": [{"name": name, "host": host, "port": port}]}, journals[name])
    return port, journals


def scenario_file(tmp_path: Path, resolver: UserResolver, port: int, domain: str) -> Path:
    path = tmp_path / f"named-{domain}.yaml"
    path.write_text(
        f"""\
name: named-resolver
allow_remote: true
resolver: {{server: "{resolver.text}", timeout_ms: 500}}
servers:
  - {{mx: {domain}, port: {port}}}
routing:
  retry: {{backoff_s: 0.3, backoff_factor: 1}}
  timeouts: {{connect: 1, greeting: 1, command: 1, data: 1, dot: 1}}
campaign:
  schedule: [{{duration_s: 2.5, rate: 10}}]
  drain_s: 3
"""
    )
    return path


def received(journals: dict[str, Path], name: str) -> set[str]:
    path = journals[name] / f"receipts-{name}.csv"
    return {r["msg_id"] for r in read_csv(path)} if path.exists() else set()


def test_senders_follow_an_mx_change_on_the_resolver_the_scenario_names(sinks, resolver, tmp_path):
    port, journals = sinks
    scenario = load_scenario(scenario_file(tmp_path, resolver, port, "shop.test"))
    # The servers are the MX set the user's resolver gave as the file was loaded.
    assert scenario.dns is None
    assert [(s.name, s.host, s.priority, s.mx) for s in scenario.servers] == [
        ("mx1.shop.test", "mx1.shop.test", 10, "shop.test"),
        ("mx2.shop.test", "mx2.shop.test", 20, "shop.test"),
    ]
    assert resolver.queries("shop.test", "MX"), "the MX set was asked of the named resolver"

    rows: list[tuple[Any, ...]] = []
    t0 = time.time()
    driver = Driver(
        dispatcher=Dispatcher(scenario.campaign.build_schedule(), 0, 1),
        factory=MessageFactory(scenario.streams(), "named", scenario.campaign.seed),
        policy=scenario.policy(seed="1/0"),
        retry=scenario.retry_policy(),
        t0=t0,
        emit=rows.append,
    )
    asks = scenario.senders_resolver(run_dns=None)  # as locust_glue's _hosts builds it
    assert asks is not None
    hosts = HostResolver(asks, allow_remote=scenario.allow_remote)
    sender = Sender(scenario.client_servers(), hosts=hosts)
    # Mid-run, the resolver's MX set loses mx1 (a health check took the primary out): one
    # second into the schedule, counted from the driver's own t0 once all is set up (the
    # checks below use the time the resolver journaled it started).
    fault = resolver.start(
        kind="records", start_at=t0 + 1.0, duration=30,
        records={"shop.test": {"MX": ["20 mx2.shop.test"], "ttl": TTL}},
    )  # fmt: skip
    try:
        drive(driver, sender, limit_s=12)
    finally:
        resolver.stop(fault)
    path = tmp_path / "attempts.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = RowWriter(f)
        writer.writerow(AttemptRecord.header())
        for row in rows:
            writer.writerow(row)
    attempts = read_csv(path)

    # Every message delivered once, at the address its accepted attempt names.
    finals = {a["msg_id"]: a for a in attempts if a["final"] == "1"}
    assert len(finals) == 25
    assert {a["outcome"] for a in finals.values()} == {"accepted"}
    for name, addr in (("mx1", MX1), ("mx2", MX2)):
        at_addr = {a["msg_id"] for a in finals.values() if a["addr"] == addr}
        assert received(journals, name) == at_addr
    assert received(journals, "mx1"), "before the change, mail went to the preferred MX"
    assert received(journals, "mx2"), "after it, the senders followed the resolver"

    # Before the change: mx1 at MX1 with its TTL; after the MX answer cached before it
    # expired, mx1 is passed over as not in the set (5.4.4, no backoff), mail goes to mx2.
    started = float(
        next(
            r["time"]
            for r in read_csv(resolver.journals / "faults-dns.csv")
            if r["fault_id"] == fault.id and r["state"] == "start"
        )
    )
    for a in attempts:
        if a["outcome"] == "accepted":
            assert a["dns_ttl"] == str(TTL)
            host = "mx1.shop.test" if a["addr"] == MX1 else "mx2.shop.test"
            assert (a["server"], a["dns_name"]) == (host, host)
        if float(a["start"]) > started + TTL + LATE_S:
            assert a["addr"] != MX1
    passed_over = [a for a in attempts if a["error"] == "dns:not_in_mx"]
    assert passed_over
    assert {(a["server"], a["outcome"], a["enhanced"], a["addr"]) for a in passed_over} == {
        ("mx1.shop.test", "refused", "5.4.4", "")
    }
    assert min(float(a["start"]) for a in passed_over) >= started
    # The answers the senders used are the named resolver's: it journaled a question for
    # each distinct answer time of mx1's and mx2's A records.
    for host in ("mx1.shop.test", "mx2.shop.test"):
        used = {a["dns_at"] for a in attempts if a["dns_name"] == host}
        assert len(resolver.queries(host, "A")) >= len(used) > 0


def test_validate_says_an_mx_lookup_failure_in_one_line(resolver, tmp_path, capsys):
    ok = scenario_file(tmp_path, resolver, 2525, "shop.test")
    assert main(["validate", str(ok)]) == 0
    assert ": ok: named-resolver: 25 messages over 2.5 s, 2 servers" in capsys.readouterr().out

    nomx = scenario_file(tmp_path, resolver, 2525, "mx2.shop.test")  # a name, no MX
    assert main(["validate", str(nomx)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"maildrill: {nomx}: servers[0]: mx mx2.shop.test: the resolver has no MX for it\n"
    )

    fault = resolver.start(kind="servfail", names=["shop.test"], duration=30)
    try:
        assert main(["validate", str(ok)]) == 2
    finally:
        resolver.stop(fault)
    err = capsys.readouterr().err
    assert err == (
        f"maildrill: {ok}: servers[0]: mx shop.test: resolver {resolver.text} gave no answer "
        "(SERVFAIL)\n"
    )


def test_check_finds_the_servers_through_the_named_resolver(sinks, resolver, tmp_path, capsys):
    port, _ = sinks
    path = scenario_file(tmp_path, resolver, port, "shop.test")
    assert main(["check", "--scenario", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["host"], s["port"], s["answered"]) for s in report["servers"]] == [
        ("mx1.shop.test", MX1, port, True),
        ("mx2.shop.test", MX2, port, True),
    ]
