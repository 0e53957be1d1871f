"""The run's zones as a scenario writes them: each record kind read, each mistake named,
and the answers the authority gives from them (pure: no socket)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from loadtest.dns_run import write_run_zones
from loadtest.scenario import ScenarioError, parse_scenario
from maildrill.dns.files import load_zones
from maildrill.dns.server import Authority
from maildrill.dns.zone import TXT_STRING, ZoneError, is_reserved_zone, parse_zones

SHOP: dict[str, Any] = {
    "shop.test": {
        "ttl": 600,
        "MX": ["10 mx1.shop.test", {"preference": 20, "host": "MX2.shop.test."}],
        "TXT": "v=spf1 ip4:127.0.0.11 -all",
        "mx1": {"A": "127.0.0.11", "AAAA": "::1"},
        "mx2.shop.test": {"a": ["127.0.0.12", "127.0.0.13"]},
        "_dmarc": {"TXT": "v=DMARC1; p=reject"},
        "s1._domainkey": {"TXT": "v=DKIM1; k=rsa; p=" + "K" * 600, "ttl": 60},
        "www": {"CNAME": "mx1.shop.test"},
    },
    "127.in-addr.arpa": {
        "127.0.0.11": {"PTR": "mx1.shop.test"},
        "12.0.0": {"PTR": "mx2.shop.test"},
    },
}


def records(zones: Any, origin: str) -> set[tuple[str, str, int, str]]:
    zone = next(z for z in zones if z.origin == origin)
    return {(r.name, r.rtype, r.ttl, r.text()) for r in zone.records}


def test_each_record_kind_is_read_with_absolute_names_and_ttls() -> None:
    zones = parse_zones(SHOP)
    shop = records(zones, "shop.test")
    assert ("shop.test", "MX", 600, "10 mx1.shop.test.") in shop
    assert ("shop.test", "MX", 600, "20 mx2.shop.test.") in shop
    assert ("shop.test", "TXT", 600, '"v=spf1 ip4:127.0.0.11 -all"') in shop
    assert ("mx1.shop.test", "A", 600, "127.0.0.11") in shop
    assert ("mx1.shop.test", "AAAA", 600, "::1") in shop
    assert {("mx2.shop.test", "A", 600, f"127.0.0.{i}") for i in (12, 13)} <= shop
    assert ("_dmarc.shop.test", "TXT", 600, '"v=DMARC1; p=reject"') in shop
    assert ("www.shop.test", "CNAME", 600, "mx1.shop.test.") in shop
    dkim = [r for r in shop if r[0] == "s1._domainkey.shop.test"]
    assert len(dkim) == 1
    assert dkim[0][2] == 60
    reverse = records(zones, "127.in-addr.arpa")
    assert reverse == {
        ("11.0.0.127.in-addr.arpa", "PTR", 300, "mx1.shop.test."),
        ("12.0.0.127.in-addr.arpa", "PTR", 300, "mx2.shop.test."),
    }


def test_a_long_txt_is_split_into_strings_of_255_bytes_and_joins_back() -> None:
    value = "v=DKIM1; k=rsa; p=" + "K" * 600
    (zone,) = parse_zones({"shop.test": {"sel._domainkey": {"TXT": value}}})
    (record,) = zone.records
    strings = record.rdata.strings  # type: ignore[attr-defined]
    assert [len(s) for s in strings] == [TXT_STRING, TXT_STRING, len(value) - 2 * TXT_STRING]
    assert b"".join(strings).decode() == value


def test_given_strings_are_kept_as_one_record() -> None:
    (zone,) = parse_zones({"shop.test": {"TXT": [["v=spf1 ", "-all"]]}})
    (record,) = zone.records
    assert record.text() == '"v=spf1 " "-all"'


def test_the_master_file_has_the_soa_ns_and_records() -> None:
    text = parse_zones(SHOP)[0].to_text()
    assert text.startswith("$ORIGIN shop.test.\n")
    assert "shop.test. 600 IN SOA localhost. hostmaster.shop.test. 1 3600 600 86400 600" in text
    assert "shop.test. 600 IN NS localhost." in text
    assert "s1._domainkey.shop.test. 60 IN TXT" in text


def test_a_null_mx_is_allowed_alone() -> None:
    (zone,) = parse_zones({"shop.test": {"MX": "0 ."}})
    assert zone.records[0].text() == "0 ."


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        (
            {"shop.test": {"mx1": {"A": "127.0.0.300"}}},
            "zone shop.test: mx1.shop.test A '127.0.0.300': not an IPv4 address",
        ),
        ({"shop.test": {"mx1": {"A": 12}}}, "mx1.shop.test A 12: not an IPv4 address"),
        (
            {"shop.test": {"mx1": {"AAAA": "127.0.0.1"}}},
            "mx1.shop.test AAAA '127.0.0.1': not an IPv6 address",
        ),
        (
            {"shop.test": {"MX": "70000 mx1.shop.test"}},
            "shop.test MX '70000 mx1.shop.test': the preference 70000 is not within 0-65535",
        ),
        ({"shop.test": {"MX": "ten mx1.shop.test"}}, "the preference 'ten' is not a number"),
        (
            {"shop.test": {"MX": "mx1.shop.test"}},
            "shop.test MX 'mx1.shop.test': expected 'PREFERENCE HOST'",
        ),
        (
            {"shop.test": {"MX": "10 mx_1.shop.test"}},
            "shop.test MX '10 mx_1.shop.test': 'mx_1.shop.test' is not a domain name",
        ),
        (
            {"shop.test": {"MX": ["0 .", "10 mx1.shop.test"]}},
            "a null MX (0 .) is the name's only MX",
        ),
        ({"shop.test": {"MX": "5 ."}}, "a null MX (host '.') has preference 0"),
        ({"shop.test": {"TXT": [["x" * 256]]}}, "string 1 is 256 bytes, at most 255"),
        ({"shop.test": {"TXT": "x" * 9000}}, "9000 bytes, at most 8192 in one TXT record"),
        ({"shop.test": {"TXT": 5}}, "shop.test TXT 5: expected text"),
        (
            {"shop.test": {"other.test.": {"A": "127.0.0.1"}}},
            "zone shop.test: other.test. (other.test) is outside the zone",
        ),
        (
            {"shop.test": {"127.0.0.11": {"PTR": "mx1.shop.test"}}},
            "127.0.0.11 (11.0.0.127.in-addr.arpa) is outside the zone",
        ),
        (
            {"shop.test": {"mx1": {"PTR": "mx1.shop.test"}}},
            "mx1.shop.test PTR: a PTR's name is under in-addr.arpa or ip6.arpa",
        ),
        (
            {"shop.test": {"www": {"CNAME": "a.shop.test", "A": "127.0.0.1"}}},
            "www.shop.test CNAME: a name with a CNAME has no other record",
        ),
        ({"shop.test": {"CNAME": "a.shop.test"}}, "shop.test CNAME: not at the zone's apex"),
        (
            {"shop.test": {"mx1": {"SRV": "x"}}},
            "mx1.shop.test: 'SRV' is not a record type maildrill serves",
        ),
        (
            {"shop.test": {"mx": "10 mx1.shop.test"}},
            "shop.test: mx: expected a mapping of record types (record types are upper case: MX)",
        ),
        ({"shop.test": {"mx1": {"A": []}}}, "mx1.shop.test A: an empty list"),
        ({"shop.test": {"ttl": -1}}, "zone shop.test: ttl: -1 is not a TTL"),
        (
            {"shop.test": {"mx1": {"A": "127.0.0.1", "ttl": "1h"}}},
            "mx1.shop.test: ttl: '1h' is not a TTL",
        ),
        ({"shop.test": {"a b": {"A": "127.0.0.1"}}}, "'a b' is not a name"),
        (
            {"shop.test": {"mx1": {"A": "127.0.0.1"}, "mx1.shop.test": {"A": "127.0.0.2"}}},
            "'mx1.shop.test' names mx1.shop.test again ('mx1')",
        ),
        ({"shop.test": {}, "sub.shop.test": {}}, "zone sub.shop.test is inside zone shop.test"),
        ({"shop.test": {}, "SHOP.test.": {}}, "zone 'SHOP.test.' is 'shop.test' again"),
        ({"gmail.com": {"MX": "10 mx.gmail.com"}}, "zone gmail.com: not a reserved name"),
        ({"10.in-addr.arpa": {}}, "zone 10.in-addr.arpa: not a reserved name"),
        ({"shop_x.test": {}}, "zone 'shop_x.test': 'shop_x.test' is not a domain name"),
        ([], "zones: expected a mapping of zone names to their records"),
    ],
)
def test_each_mistake_is_one_line_naming_the_record(zones: Any, message: str) -> None:
    with pytest.raises(ZoneError) as caught:
        parse_zones(zones)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_real_domain_needs_allow_remote() -> None:
    (zone,) = parse_zones({"gmail.com": {"MX": "10 mx.gmail.com"}}, allow_remote=True)
    assert zone.origin == "gmail.com"


@pytest.mark.parametrize(
    ("origin", "reserved"),
    [
        ("shop.test", True),
        ("a.example", True),
        ("example.com", True),
        ("mail.example.org", True),
        ("x.invalid", True),
        ("127.in-addr.arpa", True),
        ("0.0.127.in-addr.arpa", True),
        ("2.0.192.in-addr.arpa", True),
        ("in-addr.arpa", False),
        ("notexample.com", False),
        ("shop.com", False),
    ],
)
def test_reserved_zones(origin: str, reserved: bool) -> None:
    assert is_reserved_zone(origin) is reserved


# -- the answers, without a socket ---------------------------------------------------------


def ask(name: str, rtype: str, **kw: Any) -> dns.message.Message:
    authority = Authority([z.to_dns() for z in parse_zones(SHOP)])
    query = dns.message.make_query(name, rtype, **kw)
    return authority.respond(query)


def test_an_answer_is_authoritative_and_never_offers_recursion() -> None:
    response = ask("mx1.shop.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert [r.to_text() for r in response.answer[0]] == ["127.0.0.11"]


@pytest.mark.parametrize(
    ("name", "rtype", "rcode"),
    [
        ("nope.shop.test", "A", dns.rcode.NXDOMAIN),
        ("mx1.shop.test", "TXT", dns.rcode.NOERROR),
        ("_domainkey.shop.test", "TXT", dns.rcode.NOERROR),  # an empty non-terminal
        ("99.0.0.127.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN),
    ],
)
def test_nxdomain_and_nodata_carry_the_soa(name: str, rtype: str, rcode: int) -> None:
    response = ask(name, rtype)
    assert response.rcode() == rcode
    assert response.answer == []
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    # RFC 2308: the negative TTL is the SOA's minimum, the zone's default TTL here
    assert soa.ttl == (600 if name.endswith("shop.test") else 300)


def test_a_name_outside_the_zones_is_refused_not_forwarded() -> None:
    response = ask("gmail.com", "MX")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == []
    assert response.authority == []


def test_a_cname_is_followed_within_the_zones() -> None:
    response = ask("www.shop.test", "A")
    assert [(r.rdtype, r[0].to_text()) for r in response.answer] == [
        (dns.rdatatype.CNAME, "mx1.shop.test."),
        (dns.rdatatype.A, "127.0.0.11"),
    ]


def test_udp_truncates_beyond_the_payload_and_tcp_does_not() -> None:
    many = {"shop.test": {"big": {"TXT": [f"{i:03d}" + "x" * 200 for i in range(20)]}}}
    authority = Authority([z.to_dns() for z in parse_zones(many)])
    wire = dns.message.make_query("big.shop.test", "TXT").to_wire()  # no EDNS: 512 bytes
    udp = dns.message.from_wire(authority.handle(wire, max_size=4096) or b"")
    assert udp.flags & dns.flags.TC
    tcp = dns.message.from_wire(authority.handle(wire, max_size=None) or b"")
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 20


def test_garbage_gets_formerr_and_a_response_gets_nothing() -> None:
    authority = Authority([z.to_dns() for z in parse_zones(SHOP)])
    garbage = b"\x12\x34\x01\x00" + b"\x00\x01" + b"\xff" * 20
    reply = authority.handle(garbage, max_size=512)
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0x0F == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("shop.test", "A"))
    assert authority.handle(response.to_wire(), max_size=512) is None
    assert authority.handle(b"\x00" * 5000, max_size=512) is None


# -- the scenario's `dns:` section ---------------------------------------------------------


def scenario_with(zones: Any, **top: Any) -> dict[str, Any]:
    return {
        "servers": [{"name": "primary", "host": "127.0.0.1", "port": 2525}],
        "campaign": {"schedule": [{"rate": 1, "duration_s": 1}]},
        "dns": {"zones": zones},
        **top,
    }


def test_a_scenario_names_the_bad_record_in_one_line() -> None:
    bad = scenario_with({"shop.test": {"mx1": {"A": "127.0.0.300"}}})
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(bad, "s.yaml")
    assert str(caught.value) == (
        "s.yaml: dns: zone shop.test: mx1.shop.test A '127.0.0.300': not an IPv4 address"
    )


def test_a_scenario_serves_a_real_domain_only_with_allow_remote() -> None:
    real = {"gmail.com": {"MX": "10 mx.gmail.com"}}
    with pytest.raises(ScenarioError, match=r"s.yaml: dns: zone gmail.com: not a reserved"):
        parse_scenario(scenario_with(real), "s.yaml")
    scenario = parse_scenario(scenario_with(real, allow_remote=True), "s.yaml")
    assert scenario.dns is not None
    assert [z.origin for z in scenario.dns.build(allow_remote=True)] == ["gmail.com"]


def test_the_run_directory_keeps_the_zones_as_served(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_with(SHOP))
    paths = write_run_zones(scenario, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "dns/shop.test.zone",
        "dns/127.in-addr.arpa.zone",
    ]
    served = load_zones(paths)  # what `python -m maildrill.dns` serves from them
    response = served.respond(dns.message.make_query("s1._domainkey.shop.test", "TXT"))
    assert (
        b"".join(response.answer[0][0].strings).decode()
        == SHOP["shop.test"]["s1._domainkey"]["TXT"]
    )
    assert write_run_zones(parse_scenario({**scenario_with(SHOP), "dns": None}), tmp_path) == []
