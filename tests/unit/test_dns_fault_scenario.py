"""A scenario's faults on the run's DNS server (`target: dns`): checked strictly with the
scenario, each problem one line; planned on the timeline as faults sent ahead."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.scenario import parse_scenario
from loadtest.timeline import DnsServerFault, plan
from tests.helpers import merge, scenario_refused

ZONES = {
    "shop.test": {
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": "127.0.0.11"},
        "mx2": {"A": "127.0.0.12"},
        "smtp": {"A": "127.0.0.11", "ttl": 5},
    }
}
BASE: dict[str, Any] = {
    "servers": [
        {"name": "primary", "priority": 10, "local": True},
        {"name": "secondary", "priority": 20, "local": True},
    ],
    "campaign": {"schedule": [{"duration_s": 30, "rate": 10}]},
    "dns": {"zones": ZONES},
}
SWITCH = {"smtp.shop.test": {"A": "127.0.0.12", "ttl": 5}}


def with_faults(*faults: dict[str, Any], **patch: Any) -> dict[str, Any]:
    return merge(BASE, {"faults": list(faults), **patch})


def test_each_kind_validates_and_is_planned_as_sent_ahead() -> None:
    scenario = parse_scenario(
        with_faults(
            {"at": 5, "target": "dns", "kind": "records", "duration": 10, "records": SWITCH},
            {"at": 1, "target": "dns", "kind": "servfail", "names": ["shop.test"]},
            {"at": 2, "target": "dns", "kind": "timeout", "types": ["mx"], "probability": 0.5},
            {"at": 3, "target": "dns", "kind": "nxdomain", "names": ["mx1.shop.test."]},
            {"at": 4, "target": "dns", "kind": "latency", "ms": 300, "duration": 2},
            {"at": 6, "target": "primary", "kind": "down", "duration": 2},
        )
    )
    timeline = plan(scenario)
    dns = [p.event for p in timeline.sent_ahead() if isinstance(p.event, DnsServerFault)]
    assert [(e.at, e.kind, e.target) for e in dns] == [
        (1, "servfail", "dns"),
        (2, "timeout", "dns"),
        (3, "nxdomain", "dns"),
        (4, "latency", "dns"),
        (5, "records", "dns"),
    ]
    assert len(timeline.sent_ahead()) == 6  # the sink's fault too
    assert list(timeline.due(100.0)) == []  # none is carried out by the orchestrator's clock
    records = dns[-1]
    assert records.params == {"records": SWITCH}
    assert records.request(1234.5) == {
        "kind": "records",
        "probability": 1.0,
        "records": SWITCH,
        "duration": 10,
        "start_at": 1234.5,
    }
    assert dns[1].probability == 0.5
    first = timeline.sent_ahead()[0]
    first.scheduled("dns-servfail-1", 0.0)
    assert first.settle("failed: boom", None) == "the DNS server could not start it: boom"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "down"}, ("faults[0].kind", "'down' is not a DNS fault", "servfail")),
        ({"kind": "latency"}, ("faults[0] (latency on dns)", "ms")),
        ({"kind": "latency", "ms": 0}, ("faults[0] (latency on dns)", "ms")),
        ({"kind": "servfail", "colour": "red"}, ("faults[0] (servfail on dns)", "colour")),
        ({"kind": "servfail", "names": ["www.shop.test"]}, ("www.shop.test", "shop.test")),
        ({"kind": "nxdomain", "names": ["gmail.com"]}, ("gmail.com", "serve")),
        ({"kind": "servfail", "types": ["SRV"]}, ("SRV",)),
        ({"kind": "records", "records": {"smtp.shop.test": {"A": "127.0.0.12"}}}, ("ttl",)),
        ({"kind": "records", "records": {"smtp.shop.test": {"A": "1.2.3", "ttl": 5}}}, ("IPv4",)),
        ({"kind": "records", "records": {"smtp.shop.test": {"SRV": "x", "ttl": 5}}}, ("SRV",)),
        (
            {"kind": "records", "records": {"new.shop.test": {"A": "127.0.0.12", "ttl": 5}}},
            ("new",),
        ),
        ({"kind": "records", "records": {}}, ("records",)),
        ({"kind": "records", "records": SWITCH, "probability": 0.5}, ("probability",)),
        ({"kind": "records", "records": SWITCH, "names": ["smtp.shop.test"]}, ("names",)),
    ],
)
def test_a_bad_dns_fault_is_refused_in_one_line(
    fault: dict[str, Any], words: tuple[str, ...]
) -> None:
    scenario_refused(with_faults({"at": 1, "target": "dns", **fault}), *words)


def test_a_dns_fault_needs_the_run_dns_server() -> None:
    data = with_faults({"at": 1, "target": "dns", "kind": "servfail"})
    del data["dns"]
    scenario_refused(data, "faults[0].target", "no dns: section")


def test_a_dns_fault_keeps_the_schedule_checks() -> None:
    scenario_refused(
        with_faults({"at": 30, "target": "dns", "kind": "servfail"}), "faults[0].at", "schedule"
    )


def test_a_server_named_dns_is_refused_beside_the_run_dns_server() -> None:
    servers = [*BASE["servers"], {"name": "dns", "priority": 30, "local": True}]
    scenario_refused(merge(BASE, {"servers": servers}), "'dns'", "DNS server")
    without = merge(BASE, {"servers": servers})
    del without["dns"]
    parse_scenario(without)  # no DNS server: the name is free
