"""The Failover tab's DNS faults, as plain data: offered only with `dns:`, a commanded
fault checked by the scheduled faults' rules and made into the request a scheduled one
is, and the faults in force shown with what they do."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.dns_spec import DnsSpec
from loadtest.failover_tab import dns_live
from loadtest.fault_event import FaultEvent
from loadtest.scenario import parse_scenario
from sinks.control_client import ActiveFault
from tests.helpers import merge

ZONES = {
    "shop.test": {
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": "127.0.0.11"},
        "mx2": {"A": "127.0.0.12"},
        "smtp": {"A": "127.0.0.11", "ttl": 5},
        "spf": {"TXT": "v=spf1 -all"},
    }
}
DNS = DnsSpec(zones=ZONES)
SWITCH = {"smtp.shop.test": {"A": "127.0.0.12", "ttl": 5}}
T0 = 1_000_000.0


def command(kind: str, duration: Any = None, **params: Any) -> dict[str, Any]:
    return dns_live.command(DNS, {"server": "dns", "kind": kind, "duration": duration,
                                  "params": params})  # fmt: skip


def refused(kind: Any, duration: Any = None, **params: Any) -> str:
    with pytest.raises(ValueError, match=r"^(\w+ on dns|kind|params): ") as caught:
        dns_live.command(DNS, {"kind": kind, "duration": duration, "params": params})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_offered_only_where_the_scenario_serves_dns():
    assert dns_live.offer(None) is None
    offer = dns_live.offer(DNS)
    assert offer is not None
    assert [k["kind"] for k in offer["kinds"]] == [
        "latency", "nxdomain", "records", "servfail", "timeout"
    ]  # fmt: skip
    assert all(k["summary"] for k in offer["kinds"])
    assert offer["addressed"] == ["mx1.shop.test", "mx2.shop.test", "smtp.shop.test"]
    assert offer["names"] == [
        "mx1.shop.test", "mx2.shop.test", "shop.test", "smtp.shop.test", "spf.shop.test"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="no dns: section"):
        dns_live.command(None, {"kind": "servfail"})


def test_a_commanded_fault_is_the_request_a_scheduled_one_is():
    switch = command("records", 20, records=SWITCH)
    scheduled = FaultEvent(at=5, target="dns", kind="records", duration=20, records=SWITCH)
    assert switch == scheduled.body()
    assert switch == {"kind": "records", "probability": 1.0, "records": SWITCH, "duration": 20}
    assert command("servfail", None, names=["mx1.shop.test"], types=["A"], probability=0.5) == {
        "kind": "servfail", "probability": 0.5, "names": ["mx1.shop.test"], "types": ["A"]
    }  # fmt: skip
    assert command("latency", "", ms=300) == {"kind": "latency", "probability": 1.0, "ms": 300}
    assert command("timeout", 1.5)["duration"] == 1.5


@pytest.mark.parametrize(
    ("kind", "duration", "params", "expected"),
    [
        ("down", None, {}, "kind: 'down' is not a DNS fault; known: latency, nxdomain, records"),
        (None, None, {}, "kind: None is not a DNS fault"),
        ("servfail", 0, {}, "servfail on dns: duration: Input should be greater than 0"),
        ("servfail", "soon", {}, "servfail on dns: duration: Input should be a valid number"),
        ("servfail", None, {"names": ["nosuch.shop.test"]},
         "servfail on dns: nosuch.shop.test is not a name the run's zones (shop.test) serve"),
        ("nxdomain", None, {"types": ["AX"]}, "nxdomain on dns: types: not record types: AX"),
        ("latency", None, {}, "latency on dns: ms: Field required"),
        ("latency", None, {"ms": "x"}, "latency on dns: ms: Input should be a valid number"),
        ("servfail", None, {"probability": 2}, "servfail on dns: probability: Input should be"),
        ("records", None, {"records": {"smtp.shop.test": {"A": "127.0.0.12"}}},
         "records on dns: records: smtp.shop.test: ttl is required"),
        ("records", None, {"records": {"smtp.shop.test": {"A": "not-an-ip", "ttl": 5}}},
         "records on dns: records: smtp.shop.test A 'not-an-ip': not an IPv4 address"),
        ("records", None, {}, "records on dns: records: Field required"),
        ("records", None, {"records": {"www.shop.test": {"A": "127.0.0.12", "ttl": 5}}},
         "records on dns: www.shop.test is not a name the run's zones (shop.test) serve"),
        ("records", None, {"records": SWITCH, "probability": 0.5},
         "records on dns: probability does not apply (the records are served)"),
        ("records", None, {"records": SWITCH, "start_at": 5},
         "params: start_at not for a fault started now"),
        ("servfail", None, {"bogus": 1}, "servfail on dns: bogus: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_as_for_a_scheduled_fault(kind, duration, params, expected):
    assert refused(kind, duration, **params).startswith(expected)


def test_the_same_rules_as_the_scenarios_faults():
    """Whatever the scenario refuses for `target: dns`, the tab refuses with the same
    reason (the check is one function: loadtest.dns_fault_checks)."""
    base = {"servers": [{"name": "primary", "local": True}], "dns": {"zones": ZONES},
            "campaign": {"schedule": [{"duration_s": 5, "rate": 1}]}}  # fmt: skip
    fault = {"kind": "servfail", "names": ["nosuch.shop.test"]}
    with pytest.raises(ValueError, match=r"nosuch\.shop\.test is not a name") as scheduled:
        parse_scenario(merge(base, {"faults": [{"at": 1, "target": "dns", **fault}]}))
    live = refused("servfail", names=["nosuch.shop.test"])
    assert live.split(": ", 1)[1] in str(scheduled.value)


def fault(kind: str, state: str, params: dict[str, Any], probability: float = 1.0) -> ActiveFault:
    return ActiveFault(id=f"dns-{kind}-1", kind=kind, origin="command", probability=probability,
                       params=params, state=state, start_at=T0 + 2, started=T0 + 2.5,
                       until=T0 + 12)  # fmt: skip


def test_the_faults_in_force_say_what_they_do():
    rows = dns_live.in_force(
        [
            fault("records", "active", {"records": SWITCH}),
            fault("servfail", "pending", {"names": ["mx1.shop.test"], "types": ["a"]}, 0.5),
            fault("latency", "active", {"ms": 300}),
            fault("timeout", "ended", {}),
        ],
        T0,
    )
    assert [(r["kind"], r["state"], r["scope"], r["start_s"], r["end_s"]) for r in rows] == [
        ("records", "active", "smtp.shop.test → A 127.0.0.12 (TTL 5 s)", 2.5, 12.0),
        ("servfail", "pending", "mx1.shop.test (A), 0.5 of answers", 2.5, 12.0),
        ("latency", "active", "every name, 300 ms late", 2.5, 12.0),
    ]  # fmt: skip
    dropped = {"shop.test": {"MX": [], "ttl": 5}, "smtp.shop.test": {"A": ["127.0.0.12"]}}
    assert dns_live.scope("records", {"records": dropped}) == (
        "shop.test → MX removed (TTL 5 s); smtp.shop.test → A 127.0.0.12"
    )
    assert dns_live.in_force([fault("servfail", "active", {})], 0.0)[0]["start_s"] is None


def test_a_switch_off_this_machine_needs_allow_remote_live_and_scheduled():
    """A records switch is where mail goes next: an address outside loopback is refused
    without `allow_remote`, from the tab and in `faults:` alike, with the same reason."""
    away = {"smtp.shop.test": {"A": "192.0.2.7", "ttl": 5}}
    live = refused("records", records=away)
    assert live == (
        "records on dns: smtp.shop.test A 192.0.2.7 is outside loopback: set allow_remote: "
        "true to send mail there"
    )
    allowed = dns_live.command(
        DNS, {"kind": "records", "params": {"records": away}}, allow_remote=True
    )
    assert allowed["records"] == away
    base = {"servers": [{"name": "primary", "local": True}], "dns": {"zones": ZONES},
            "campaign": {"schedule": [{"duration_s": 5, "rate": 1}]}}  # fmt: skip
    scheduled = {"faults": [{"at": 1, "target": "dns", "kind": "records", "records": away}]}
    with pytest.raises(ValueError, match="outside loopback") as caught:
        parse_scenario(merge(base, scheduled))
    assert live.split(": ", 1)[1] in str(caught.value)
    parse_scenario(merge(merge(base, scheduled), {"allow_remote": True}))  # accepted


def test_no_dns_faults_when_the_senders_ask_another_resolver():
    """With `resolver:` the senders never ask the run's DNS server: no form, and a fault
    sent anyway is refused with the reason `faults:` gives."""
    resolver = "127.0.0.1:5353"
    assert dns_live.offer(DNS, resolver) is None
    with pytest.raises(ValueError, match=r"^dns is the run's DNS server, which") as caught:
        dns_live.command(DNS, {"kind": "servfail"}, resolver=resolver)
    base = {"servers": [{"name": "primary", "host": "smtp.shop.test"}], "dns": {"zones": ZONES},
            "resolver": resolver, "allow_remote": True,
            "campaign": {"schedule": [{"duration_s": 5, "rate": 1}]},
            "faults": [{"at": 1, "target": "dns", "kind": "servfail"}]}  # fmt: skip
    with pytest.raises(ValueError, match="senders do not ask") as scheduled:
        parse_scenario(base)
    assert str(caught.value).startswith("dns is the run's DNS server, which the senders")
    assert str(caught.value) in str(scheduled.value)
