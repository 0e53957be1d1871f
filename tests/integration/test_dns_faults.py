"""DNS faults on the run's DNS server as its own process (`python -m maildrill.dns
--journal-dir`), through its control API with the client maildrill uses for sinks: each
kind as a resolver sees it, a scheduled fault's window on the server's clock, and the
journals (faults-dns.csv, dns-queries.csv) recounted against what the client saw.

The window checks need no tolerance: on one machine, an answer received before `start_at`
was decided before it, and a query sent after it was decided after it; so every answer
wholly before the window is the zone's, every one wholly inside is the fault's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from sinks.control_client import ActiveFault, ControlClient, ControlRefused
from tests.helpers import dns_child, read_csv

ZONES: dict[str, Any] = {
    "shop.test": {
        "ttl": 60,
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": "127.0.0.11"},
        "mx2": {"A": "127.0.0.12"},
        "smtp": {"A": "127.0.0.11", "ttl": 30},
    }
}
TOKEN = "dns-fault-test-token"


@dataclass
class Dns:
    address: tuple[str, int]
    control: ControlClient
    journals: Path

    def start(self, **body: Any) -> ActiveFault:
        return ActiveFault.from_json(self.control.call("POST", "/faults", body))

    def rows(self, name: str, fault_id: str) -> list[dict[str, str]]:
        return [r for r in read_csv(self.journals / name) if fault_id in r["fault_id"].split()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    out = tmp_path_factory.mktemp("dns-faults")
    with dns_child(ZONES, out, TOKEN) as (ready, child):
        assert "token" not in ready  # given by the environment: never printed
        control = ControlClient.on_port(ready["control_port"], TOKEN)
        yield Dns((ready["host"], ready["port"]), control, out)
    assert child.returncode == 0


@dataclass
class Asked:
    sent: float
    received: float
    rcode: str  # "none": no answer within the timeout
    records: tuple[str, ...]
    ttl: int | None


def ask(dns_: Dns, name: str, rtype: str, *, tcp: bool = False, timeout: float = 2.0) -> Asked:
    query = dns.message.make_query(name, rtype)
    sent = time.time()
    try:
        send = dns.query.tcp if tcp else dns.query.udp
        answer = send(query, dns_.address[0], timeout=timeout, port=dns_.address[1])
    except dns.exception.Timeout:
        return Asked(sent, time.time(), "none", (), None)
    received = time.time()
    rrsets = [r for r in answer.answer if r.rdtype == query.question[0].rdtype]
    records = tuple(sorted(rd.to_text() for r in rrsets for rd in r))
    ttls = [r.ttl for r in rrsets] or [r.ttl for r in answer.authority]
    return Asked(sent, received, dns.rcode.to_text(answer.rcode()), records, min(ttls or [0]))


def poll(dns_: Dns, name: str, rtype: str, until: float) -> list[Asked]:
    """Ask again and again until the clock reads `until` (every 20 ms)."""
    seen = []
    while time.time() < until:
        seen.append(ask(dns_, name, rtype))
        time.sleep(0.02)
    return seen


def test_a_scheduled_servfail_holds_its_window_on_the_servers_clock(server: Dns) -> None:
    start_at = time.time() + 0.4
    fault = server.start(kind="servfail", names=["mx1.shop.test"], start_at=start_at, duration=0.8)
    assert (fault.state, fault.origin) == ("pending", "schedule")
    seen = poll(server, "mx1.shop.test", "A", start_at + 1.1)
    before = [a for a in seen if a.received < start_at]
    inside = [a for a in seen if a.sent > start_at and a.received < start_at + 0.8]
    after = [a for a in seen if a.sent > start_at + 0.8]
    assert before
    assert inside
    assert after
    assert {a.rcode for a in before} == {"NOERROR"}
    assert {a.rcode for a in inside} == {"SERVFAIL"}
    assert {a.rcode for a in after} == {"NOERROR"}
    assert {a.records for a in after} == {("127.0.0.11",)}
    other = ask(server, "mx2.shop.test", "A")  # another name: out of its scope
    assert other.rcode == "NOERROR"
    # The journal: one start at or after start_at (measured, not the plan), one stop at
    # the window's end; the query rows it marks are the SERVFAILs the client received.
    faults = server.rows("faults-dns.csv", fault.id)
    assert [(r["sink"], r["kind"], r["state"], r["origin"]) for r in faults] == [
        ("dns", "servfail", "start", "schedule"),
        ("dns", "servfail", "stop", "schedule"),
    ]
    assert start_at <= float(faults[0]["time"]) <= min(a.received for a in inside)
    assert float(faults[1]["time"]) == pytest.approx(start_at + 0.8, abs=1e-5)
    marked = server.rows("dns-queries.csv", fault.id)
    assert len(marked) == sum(a.rcode == "SERVFAIL" for a in seen)
    assert {(r["name"], r["type"], r["rcode"], r["ttl"]) for r in marked} == {
        ("mx1.shop.test", "A", "SERVFAIL", "")
    }
    assert server.control.call("GET", f"/faults/{fault.id}")["state"] == "ended"


def test_a_records_switch_serves_the_new_sets_with_their_ttl(server: Dns) -> None:
    start_at = time.time() + 0.4
    records = {
        "smtp.shop.test": {"A": "127.0.0.12", "ttl": 5},  # the health-checked record moves
        "shop.test": {"MX": "20 mx2.shop.test", "ttl": 7},  # the primary's MX dropped
    }
    fault = server.start(kind="records", records=records, start_at=start_at, duration=0.8)
    seen = poll(server, "smtp.shop.test", "A", start_at + 1.1)
    before = [a for a in seen if a.received < start_at]
    inside = [a for a in seen if a.sent > start_at and a.received < start_at + 0.8]
    after = [a for a in seen if a.sent > start_at + 0.8]
    assert before
    assert inside
    assert after
    assert {(a.records, a.ttl) for a in before} == {(("127.0.0.11",), 30)}
    assert {(a.records, a.ttl) for a in inside} == {(("127.0.0.12",), 5)}
    assert {(a.records, a.ttl) for a in after} == {(("127.0.0.11",), 30)}
    mx = ask(server, "shop.test", "MX")  # after the window: both again
    assert (mx.records, mx.ttl) == (("10 mx1.shop.test.", "20 mx2.shop.test."), 60)
    # The query journal has what a follow-time analysis needs: the answer and its TTL.
    marked = server.rows("dns-queries.csv", fault.id)
    assert len(marked) == len([a for a in seen if a.records == ("127.0.0.12",)])
    assert {(r["rcode"], r["answers"], r["ttl"]) for r in marked} == {
        ("NOERROR", "127.0.0.12", "5")
    }


def test_a_records_fault_by_command_drops_a_set_until_stopped(server: Dns) -> None:
    fault = server.start(
        kind="records", records={"shop.test": {"MX": "20 mx2.shop.test", "ttl": 7}}
    )
    assert fault.state == "active"
    assert fault.origin == "command"
    mx = ask(server, "shop.test", "MX", tcp=True)
    assert (mx.rcode, mx.records, mx.ttl) == ("NOERROR", ("20 mx2.shop.test.",), 7)
    server.control.call("DELETE", f"/faults/{fault.id}")
    mx = ask(server, "shop.test", "MX")
    assert mx.records == ("10 mx1.shop.test.", "20 mx2.shop.test.")
    gone = server.start(kind="records", records={"mx1.shop.test": {"A": [], "ttl": 5}})
    nodata = ask(server, "mx1.shop.test", "A")
    assert (nodata.rcode, nodata.records, nodata.ttl) == ("NOERROR", (), 60)  # the SOA's
    server.control.call("DELETE", f"/faults/{gone.id}")


def test_nxdomain_is_authoritative_and_scoped_by_type(server: Dns) -> None:
    fault = server.start(kind="nxdomain", names=["mx1.shop.test"], types=["A"])
    try:
        answer = ask(server, "mx1.shop.test", "A")
        assert (answer.rcode, answer.records, answer.ttl) == ("NXDOMAIN", (), 60)
        assert ask(server, "mx2.shop.test", "A").rcode == "NOERROR"
        assert ask(server, "mx1.shop.test", "MX").rcode == "NOERROR"  # NODATA, not its type
    finally:
        server.control.call("DELETE", f"/faults/{fault.id}")
    assert ask(server, "mx1.shop.test", "A").records == ("127.0.0.11",)


def test_timeout_sends_nothing_over_udp_or_tcp(server: Dns) -> None:
    fault = server.start(kind="timeout", names=["mx2.shop.test"])
    try:
        assert ask(server, "mx2.shop.test", "A", timeout=0.3).rcode == "none"
        assert ask(server, "mx2.shop.test", "A", tcp=True, timeout=0.3).rcode == "none"
        assert ask(server, "mx1.shop.test", "A").rcode == "NOERROR"
    finally:
        server.control.call("DELETE", f"/faults/{fault.id}")
    assert ask(server, "mx2.shop.test", "A").rcode == "NOERROR"
    rows = server.rows("dns-queries.csv", fault.id)
    assert [(r["rcode"], r["transport"], r["peer"]) for r in rows] == [
        ("none", "udp", "127.0.0.1"),
        ("none", "tcp", "127.0.0.1"),
    ]


def test_latency_holds_the_answer_back(server: Dns) -> None:
    fault = server.start(kind="latency", ms=400, names=["mx1.shop.test"])
    try:
        slow = ask(server, "mx1.shop.test", "A")
        slow_tcp = ask(server, "mx1.shop.test", "A", tcp=True)
        quick = ask(server, "mx2.shop.test", "A")
    finally:
        server.control.call("DELETE", f"/faults/{fault.id}")
    assert slow.records == ("127.0.0.11",)
    assert slow.received - slow.sent >= 0.4
    assert slow_tcp.received - slow_tcp.sent >= 0.4
    assert quick.received - quick.sent < 0.4
    assert {r["delay_ms"] for r in server.rows("dns-queries.csv", fault.id)} == {"400.0"}


def test_bad_requests_are_refused_in_one_line(server: Dns) -> None:
    for body, words in [
        ({"kind": "flood"}, "unknown DNS fault kind"),
        ({"kind": "latency"}, "ms"),
        ({"kind": "records", "records": {"smtp.shop.test": {"A": "127.0.0.12"}}}, "ttl"),
        ({"kind": "servfail", "duration": -1}, "duration"),
        ({"kind": "servfail", "start_at": 1.0, "duration": 1}, "ended"),
    ]:
        with pytest.raises(ControlRefused) as refused:
            server.start(**body)
        assert refused.value.status == 400
        assert words in refused.value.reason
        assert "\n" not in refused.value.reason
    wrong = ControlClient(server.control.base_url, "not-the-token")
    with pytest.raises(ControlRefused) as refused:
        wrong.call("GET", "/faults")
    assert refused.value.status == 401
