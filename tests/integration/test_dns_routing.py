"""Servers named by DNS, sent to through the run's DNS server as its own process
(`python -m maildrill.dns`) and real sinks at two loopback addresses on one port: the
senders (loadtest.driver + loadtest.client, with loadtest.dns_route's lookups) follow a
`records` switch within one TTL and one cache refresh, keep their answer for its TTL, defer
through a SERVFAIL window without a bounce, move on from a host that does not exist, and
never send to an answer outside loopback. Every figure is recounted from the journals:
attempts (its addr, dns_name, dns_ttl, dns_at), the sinks' receipts, and the DNS server's
faults-dns.csv and dns-queries.csv."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtest.campaign import MessageFactory
from loadtest.client import Sender
from loadtest.dns_route import HostResolver
from loadtest.driver import Driver
from loadtest.scenario import parse_scenario
from loadtest.schedule import Dispatcher
from maildrill.dns.resolver import Resolver
from maildrill.journal import RowWriter
from maildrill.records import AttemptRecord
from sinks.control_client import ActiveFault, ControlClient
from tests.helpers import LATE_S, dns_child, drive, port_free_on, read_csv

OLD, NEW = "127.0.0.11", "127.0.0.12"
OLD_TTL, NEW_TTL = 1, 2
ZONES: dict[str, Any] = {
    "shop.test": {
        "ttl": 60,
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": OLD, "ttl": OLD_TTL},
        "mx2": {"A": NEW, "ttl": OLD_TTL},
        "smtp": {"A": OLD, "ttl": OLD_TTL},  # the health-checked record a drill moves
        "relay": {"A": OLD, "ttl": OLD_TTL},
        "far": {"A": "192.0.2.1", "ttl": OLD_TTL},  # TEST-NET-1: outside loopback
    }
}
TOKEN = "dns-routing-test-token"


@dataclass
class Dns:
    address: tuple[str, int]
    control: ControlClient
    journals: Path

    def start(self, **body: Any) -> ActiveFault:
        return ActiveFault.from_json(self.control.call("POST", "/faults", body))

    def fault_rows(self, fault_id: str) -> list[dict[str, str]]:
        rows = read_csv(self.journals / "faults-dns.csv")
        return [r for r in rows if r["fault_id"] == fault_id]

    def queries(self, name: str) -> list[dict[str, str]]:
        rows = read_csv(self.journals / "dns-queries.csv")
        return [r for r in rows if r["name"] == name and r["type"] == "A"]


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    out = tmp_path_factory.mktemp("dns-routing")
    with dns_child(ZONES, out, TOKEN) as (ready, _child):
        control = ControlClient.on_port(ready["control_port"], TOKEN)
        yield Dns((ready["host"], ready["port"]), control, out)


@dataclass
class Pair:
    """A sink at OLD and one at NEW, on the same port (a sinks file keeps its ports apart,
    so each is a set of its own, journaling to its own directory)."""

    port: int
    journals: dict[str, Path]


@pytest.fixture
def sinks(start_sinks, tmp_path):
    port = port_free_on(OLD, NEW)
    journals = {}
    for name, host in (("old", OLD), ("new", NEW)):
        journals[name] = tmp_path / name
        start_sinks({"sinks": [{"name": name, "host": host, "port": port}]}, journals[name])
    return Pair(port, journals)


def send(
    sinks: Pair, dns: Dns, servers: list[Any], seconds: float, rate: float, out: Path, **retry: Any
) -> list[dict[str, str]]:
    """The scenario's campaign sent as a Locust process sends it (driver, routing, retry,
    sender with the process's DNS cache); its attempts journal written and read back."""
    scenario = parse_scenario({
        "servers": [{**s, "port": sinks.port} for s in servers],
        "campaign": {"schedule": [{"duration_s": seconds, "rate": rate}], "drain_s": 5},
        "routing": {"retry": {"backoff_s": 0.3, "backoff_factor": 1, **retry},
                    "timeouts": {"connect": 1, "greeting": 1, "command": 1, "data": 1, "dot": 1}},
        "dns": {"zones": ZONES},
    })  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    driver = Driver(
        dispatcher=Dispatcher(scenario.campaign.build_schedule(), 0, 1),
        factory=MessageFactory(scenario.streams(), "dnsr", scenario.campaign.seed),
        policy=scenario.policy(seed="1/0"),
        retry=scenario.retry_policy(),
        t0=time.time(),
        emit=rows.append,
    )
    hosts = HostResolver(Resolver(*dns.address, timeout=0.5))
    drive(driver, Sender(scenario.client_servers(), hosts=hosts), limit_s=seconds + 8)
    path = out / "attempts.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = RowWriter(f)
        writer.writerow(AttemptRecord.header())
        for row in rows:
            writer.writerow(row)
    return read_csv(path)


def received(sinks: Pair, name: str) -> set[str]:
    path = sinks.journals[name] / f"receipts-{name}.csv"
    return {r["msg_id"] for r in read_csv(path)} if path.exists() else set()


def accepted_at(attempts: list[dict[str, str]], addr: str) -> set[str]:
    return {a["msg_id"] for a in attempts if a["outcome"] == "accepted" and a["addr"] == addr}


def test_senders_follow_a_records_switch_within_one_ttl(sinks, dns_server, tmp_path):
    # Mid-TTL: the answer fetched at about 1 s still has half its TTL to run at the switch.
    switch = time.time() + 1.5
    fault = dns_server.start(kind="records", start_at=switch, duration=30,
                             records={"smtp.shop.test": {"A": NEW, "ttl": NEW_TTL}})  # fmt: skip
    try:
        attempts = send(sinks, dns_server, [{"name": "primary", "host": "smtp.shop.test"}],
                        seconds=3.2, rate=25, out=tmp_path)  # fmt: skip
    finally:
        dns_server.control.call("DELETE", f"/faults/{fault.id}")
    started = float(
        next(r for r in dns_server.fault_rows(fault.id) if r["state"] == "start")["time"]
    )
    assert switch <= started

    # Every message delivered once, each where its attempt says, nothing elsewhere.
    assert all(a["outcome"] == "accepted" and a["dns_name"] == "smtp.shop.test" for a in attempts)
    assert received(sinks, "old") == accepted_at(attempts, OLD)
    assert received(sinks, "new") == accepted_at(attempts, NEW)
    assert len(attempts) == len(received(sinks, "old") | received(sinks, "new")) == 80

    # Each address with the TTL of the answer it came from; the old answers were received
    # before the switch took effect on the server (decided before it), the new after.
    olds = [a for a in attempts if a["addr"] == OLD]
    news = [a for a in attempts if a["addr"] == NEW]
    assert {a["dns_ttl"] for a in olds} == {str(OLD_TTL)}
    assert {a["dns_ttl"] for a in news} == {str(NEW_TTL)}
    assert max(float(a["dns_at"]) for a in olds) < started + LATE_S
    assert min(float(a["dns_at"]) for a in news) >= started

    # Follow time: the first attempt to the new address within one TTL of the old answer
    # plus one cache refresh (the next send after expiry: 1/rate); the last to the old too.
    first_new = min(float(a["start"]) for a in news)
    last_old = max(float(a["start"]) for a in olds)
    assert first_new - started <= OLD_TTL + 1 / 25 + LATE_S
    assert last_old - started <= OLD_TTL + LATE_S
    # ... and the TTL was honoured, not bypassed: the old answer served after the switch
    # until it expired (about half its TTL here), never a cached answer past its TTL.
    assert last_old - started > 0.1
    for a in attempts:
        assert float(a["start"]) < float(a["dns_at"]) + int(a["dns_ttl"]) + 0.01
    assert not [a for a in olds if float(a["start"]) > first_new]  # no flapping back

    # The cache: one question per answer used (distinct dns_at), as the DNS server counts
    # them; far fewer than the sends (3.2 s at TTL 1, then 2: at most 4 answers for 80).
    answers = {a["dns_at"] for a in attempts}
    asked = dns_server.queries("smtp.shop.test")
    asked_during = [q for q in asked if float(attempts[0]["start"]) - 0.01 <= float(q["time"])]
    assert len(answers) == len(asked_during) <= 4


def test_a_servfail_window_defers_and_every_message_arrives_after_it(sinks, dns_server, tmp_path):
    begin = time.time() + 0.5
    fault = dns_server.start(kind="servfail", names=["relay.shop.test"], start_at=begin,
                             duration=1.2)  # fmt: skip
    attempts = send(sinks, dns_server, [{"name": "primary", "host": "relay.shop.test"}],
                    seconds=2.5, rate=10, out=tmp_path, max_attempts=10)  # fmt: skip
    rows = dns_server.fault_rows(fault.id)
    started = float(next(r for r in rows if r["state"] == "start")["time"])
    stopped = float(next(r for r in rows if r["state"] == "stop")["time"])

    deferred = [a for a in attempts if a["outcome"] == "deferred"]
    assert deferred, "the window must defer some messages (the cache runs out inside it)"
    for a in deferred:  # decided by the lookup: no SMTP reply, Postfix's 4.4.3
        assert (a["phase"], a["code"], a["enhanced"], a["final"]) == ("dns", "", "4.4.3", "0")
        assert a["addr"] == a["dns_at"] == ""
        assert started <= float(a["start"]) <= stopped + LATE_S
    # No bounce: each message's last word is a delivery, the deferred ones after the window.
    finals = {a["msg_id"]: a for a in attempts if a["final"] == "1"}
    assert len(finals) == 25
    assert {a["outcome"] for a in finals.values()} == {"accepted"}
    for msg_id in {a["msg_id"] for a in deferred}:
        assert float(finals[msg_id]["start"]) >= stopped
    assert received(sinks, "old") == set(finals)
    # The DNS server said SERVFAIL as often as the attempts say they were deferred by it.
    servfails = [q for q in dns_server.queries("relay.shop.test") if q["rcode"] == "SERVFAIL"]
    assert len(servfails) == len(deferred)


def test_mx_order_and_a_host_that_does_not_exist(sinks, dns_server, tmp_path):
    """MX 10 mx1 (OLD), MX 20 mx2 (NEW): mail goes to mx1; with mx1 NXDOMAIN, the attempt
    fails for mx1 and routing moves on to mx2 at once (no bounce, no backoff)."""
    fault = dns_server.start(kind="nxdomain", names=["mx1.shop.test"], duration=30)
    try:
        attempts = send(sinks, dns_server, [{"mx": "shop.test"}], seconds=0.5, rate=10,
                        out=tmp_path)  # fmt: skip
    finally:
        dns_server.control.call("DELETE", f"/faults/{fault.id}")
    to_mx1 = [a for a in attempts if a["server"] == "mx1.shop.test"]
    assert to_mx1, "the preferred MX is tried first"
    assert {(a["outcome"], a["phase"], a["enhanced"], a["final"], a["addr"]) for a in to_mx1} == {
        ("refused", "dns", "5.4.4", "0", "")
    }
    # The same message on the next MX at once: no backoff after a host that does not exist.
    for a in to_mx1:
        nxt = next(b for b in attempts if b["msg_id"] == a["msg_id"] and b["attempt"] == "2")
        assert nxt["server"] == "mx2.shop.test"
        assert float(nxt["start"]) - float(a["end"]) < LATE_S
    # Its circuit open, the other messages went to mx2 first; each delivered there once.
    finals = [a for a in attempts if a["final"] == "1"]
    assert {(a["server"], a["addr"], a["outcome"]) for a in finals} == {
        ("mx2.shop.test", NEW, "accepted")
    }
    assert received(sinks, "new") == {a["msg_id"] for a in finals}
    assert received(sinks, "old") == set()


def test_an_answer_outside_loopback_is_never_sent_to(sinks, dns_server, tmp_path):
    attempts = send(sinks, dns_server, [{"name": "far", "host": "far.shop.test"}],
                    seconds=0.1, rate=10, out=tmp_path, max_attempts=1)  # fmt: skip
    assert len(attempts) == 1
    assert {(a["outcome"], a["phase"], a["addr"], a["error"]) for a in attempts} == {
        ("refused", "dns", "192.0.2.1", "dns:outside")
    }
    assert received(sinks, "old") == received(sinks, "new") == set()


def test_an_mx_host_dropped_from_the_set_is_passed_over(sinks, dns_server, tmp_path):
    """A `records` fault serves shop.test's MX set without mx1 (the health check took the
    primary out): the senders, asking the MX set as they send, fail mx1 for this message
    (`dns:not_in_mx`, 5.4.4, no backoff) and deliver through mx2; mx1 receives nothing."""
    records = {"shop.test": {"MX": ["20 mx2.shop.test"], "ttl": 1}}
    fault = dns_server.start(kind="records", records=records, duration=30)
    try:
        attempts = send(sinks, dns_server, [{"mx": "shop.test"}], seconds=0.5, rate=10,
                        out=tmp_path)  # fmt: skip
    finally:
        dns_server.control.call("DELETE", f"/faults/{fault.id}")
    to_mx1 = [a for a in attempts if a["server"] == "mx1.shop.test"]
    assert to_mx1, "the preferred MX is tried first: the sender's servers are the zone's"
    assert {
        (a["outcome"], a["phase"], a["enhanced"], a["error"], a["addr"], a["dns_name"])
        for a in to_mx1
    } == {("refused", "dns", "5.4.4", "dns:not_in_mx", "", "shop.test")}
    finals = [a for a in attempts if a["final"] == "1"]
    assert len(finals) == 5
    assert {(a["server"], a["addr"], a["outcome"]) for a in finals} == {
        ("mx2.shop.test", NEW, "accepted")
    }
    assert received(sinks, "new") == {a["msg_id"] for a in finals}
    assert received(sinks, "old") == set()
    # The MX set each sender used is the fault's: its MX answers carry the fault's id.
    asked = [
        r
        for r in read_csv(dns_server.journals / "dns-queries.csv")
        if r["name"] == "shop.test" and r["type"] == "MX" and r["fault_id"] == fault.id
    ]
    assert asked
    assert {r["answers"] for r in asked} == {"20 mx2.shop.test."}
