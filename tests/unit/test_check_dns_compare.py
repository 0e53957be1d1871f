"""`maildrill check --dns`'s decisions on hand-made facts: each finding from the one fact
that makes it, what is a note and not a finding, the DKIM key comparison, and which
servers are checked with which identity."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from loadtest.dnscheck.compare import Comparison, compare
from loadtest.dnscheck.facts import (
    DkimFacts,
    DmarcFacts,
    DnsFacts,
    MxFacts,
    PtrFacts,
    SenderFacts,
    SpfRecordFacts,
)
from loadtest.dnscheck.public_keys import DkimKeyError, record_public
from loadtest.dnscheck.run_keys import run_keys, with_txt
from loadtest.dnscheck.senders import Explicit, SenderError, explicit_of, senders_of
from loadtest.scenario import Scenario, parse_scenario
from loadtest.server_spec import DkimSpec
from maildrill.dns.zone import parse_zones


def sender(name: str, address: str, priority: int) -> SenderFacts:
    helo = f"{name}.shop.test"
    return SenderFacts(
        name=name,
        address=address,
        helo_name=helo,
        priority=priority,
        spf="pass",
        spf_explanation="sender SPF authorized",
        ptr=PtrFacts("ok", [helo], [helo], "ok", [address]),
        dkim=[DkimFacts(f"s{priority}", "shop.test", "ok", "v=DKIM1; p=AAAA", True)],
    )


def clean() -> DnsFacts:
    return DnsFacts(
        domain="shop.test",
        resolver="127.0.0.1:5353",
        checked_at=0.0,
        mx=MxFacts(
            "ok",
            [(10, "primary.shop.test"), (20, "secondary.shop.test")],
            {"primary.shop.test": ["127.0.0.11"], "secondary.shop.test": ["127.0.0.12"]},
        ),
        spf=SpfRecordFacts("ok", ["v=spf1 ip4:127.0.0.11 ip4:127.0.0.12 -all"], 0),
        dmarc=DmarcFacts("ok", ["v=DMARC1; p=reject"], domain="shop.test"),
        senders=[sender("primary", "127.0.0.11", 10), sender("secondary", "127.0.0.12", 20)],
    )


def secondary(facts: DnsFacts, **changes: object) -> DnsFacts:
    facts.senders[1] = dataclasses.replace(facts.senders[1], **changes)  # type: ignore[arg-type]
    return facts


def codes(result: Comparison) -> list[tuple[str, str]]:
    return [(f.code, f.server) for f in result.findings]


def test_clean_facts_find_nothing() -> None:
    result = compare(clean())
    assert result.ok
    assert result.findings == []
    assert result.notes == []


def _ptr(**changes: object) -> Callable[[DnsFacts], DnsFacts]:
    def change(f: DnsFacts) -> DnsFacts:
        return secondary(f, ptr=dataclasses.replace(f.senders[1].ptr, **changes))  # type: ignore[arg-type]

    return change


def _dkim(**changes: object) -> Callable[[DnsFacts], DnsFacts]:
    def change(f: DnsFacts) -> DnsFacts:
        key = dataclasses.replace(f.senders[1].dkim[0], **changes)  # type: ignore[arg-type]
        return secondary(f, dkim=[key])

    return change


def _set(part: str, value: object) -> Callable[[DnsFacts], DnsFacts]:
    def change(f: DnsFacts) -> DnsFacts:
        setattr(f, part, value)
        return f

    return change


CASES: dict[str, tuple[Callable[[DnsFacts], DnsFacts], list[tuple[str, str]]]] = {
    "no MX": (_set("mx", MxFacts("nodata")), [("mx-missing", "")]),
    "MX name gone": (_set("mx", MxFacts("nxdomain")), [("mx-missing", "")]),
    "MX no answer": (_set("mx", MxFacts("temperror", detail="timeout")), [("mx-temperror", "")]),
    "null MX": (
        _set("mx", MxFacts("ok", [(0, "")], {})),
        [("mx-null", "")],
    ),
    "MX host without address": (
        _set("mx", MxFacts("ok", [(10, "primary.shop.test")], {"primary.shop.test": []})),
        # and the servers match no MX host by address; primary by its HELO name
        [("mx-unresolved", "")],
    ),
    "MX prefers the secondary": (
        _set(
            "mx",
            MxFacts(
                "ok",
                [(20, "primary.shop.test"), (10, "secondary.shop.test")],
                {"primary.shop.test": ["127.0.0.11"], "secondary.shop.test": ["127.0.0.12"]},
            ),
        ),
        [("mx-order", "secondary")],
    ),
    "secondary not in SPF": (
        lambda f: secondary(f, spf="fail"),
        [("spf-not-covered", "secondary")],
    ),
    "secondary softfails": (
        lambda f: secondary(f, spf="softfail"),
        [("spf-not-covered", "secondary")],
    ),
    "SPF temperror for one": (
        lambda f: secondary(f, spf="temperror"),
        [("spf-temperror", "secondary")],
    ),
    "no SPF record": (
        # pyspf says none for both: one finding for the domain, not one per server
        lambda f: secondary(_set("spf", SpfRecordFacts("nodata"))(f), spf="none"),
        [("spf-missing", "")],
    ),
    "two SPF records": (
        _set("spf", SpfRecordFacts("ok", ["v=spf1 -all", "v=spf1 +all"])),
        [("spf-multiple", "")],
    ),
    "SPF over 10 lookups": (
        lambda f: secondary(
            _set("spf", SpfRecordFacts("ok", ["v=spf1 ..."], 11))(f), spf="permerror"
        ),
        [("spf-lookups", "")],
    ),
    "no DMARC": (_set("dmarc", DmarcFacts("nxdomain")), [("dmarc-missing", "")]),
    "two DMARC": (
        _set("dmarc", DmarcFacts("ok", ["v=DMARC1; p=none", "v=DMARC1; p=reject"])),
        [("dmarc-multiple", "")],
    ),
    "DMARC without p=": (
        _set("dmarc", DmarcFacts("ok", ["v=DMARC1; rua=mailto:x@shop.test"])),
        [("dmarc-invalid", "")],
    ),
    "DMARC no answer": (_set("dmarc", DmarcFacts("temperror")), [("dmarc-temperror", "")]),
    "DKIM key missing": (
        _dkim(status="nxdomain", record="", key_matches=None),
        [("dkim-missing", "secondary")],
    ),
    "DKIM key other": (_dkim(key_matches=False), [("dkim-mismatch", "secondary")]),
    "DKIM key revoked": (
        _dkim(problem="p= is empty: the key is revoked", key_matches=None),
        [("dkim-invalid", "secondary")],
    ),
    "DKIM no answer": (
        _dkim(status="temperror", record="", key_matches=None),
        [("dkim-temperror", "secondary")],
    ),
    "no PTR": (_ptr(status="nxdomain", names=[], confirmed=[]), [("ptr-missing", "secondary")]),
    "PTR not confirmed": (_ptr(confirmed=[]), [("ptr-not-confirmed", "secondary")]),
    "PTR no answer": (_ptr(status="temperror", names=[]), [("ptr-temperror", "secondary")]),
    "HELO not the PTR name": (
        lambda f: secondary(f, helo_name="mail.shop.test"),
        [("ptr-helo-mismatch", "secondary")],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_fact_makes_its_finding_alone(case: str) -> None:
    change, expected = CASES[case]
    result = compare(change(clean()))
    assert codes(result) == expected
    assert not result.ok


def test_an_unknown_key_is_no_finding_and_a_key_known_to_match_is_none_either() -> None:
    assert compare(_dkim(key_matches=None)(clean())).ok


@pytest.mark.parametrize(
    ("change", "note"),
    [
        (
            _set("dmarc", DmarcFacts("ok", ["v=DMARC1; p=none"])),
            "shop.test's DMARC policy is p=none: failing mail is reported, not refused",
        ),
        (
            lambda f: secondary(f, dkim=[]),
            "secondary names no DKIM selector: DMARC rests on SPF alone for its mail",
        ),
        (_dkim(domain="esp.example"), "secondary signs as d=esp.example, which does not align"),
        (
            _set(
                "mx",
                MxFacts("ok", [(10, "primary.shop.test")], {"primary.shop.test": ["127.0.0.11"]}),
            ),
            "secondary (127.0.0.12) is not among shop.test's MX hosts",
        ),
        (
            lambda f: secondary(f, helo_name=""),
            "secondary's HELO name is not known: PTR checked without it",
        ),
    ],
)
def test_what_hurts_nothing_is_a_note(change: Callable[[DnsFacts], DnsFacts], note: str) -> None:
    result = compare(change(clean()))
    assert result.ok
    assert any(n.startswith(note) for n in result.notes), result.notes


def test_a_subdomain_key_aligns() -> None:
    result = compare(_dkim(domain="mail.shop.test")(clean()))
    assert result.ok
    assert result.notes == []


# -- DKIM key records -------------------------------------------------------------------------


def test_an_rsa_record_gives_the_key_in_spki_form_whether_spki_or_pkcs1() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    for der in (spki, pkcs1):
        p = base64.b64encode(der).decode()
        assert record_public(f"v=DKIM1; k=rsa; p={p[:20]} {p[20:]}") == spki


def test_an_ed25519_record_gives_the_raw_key() -> None:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert record_public(f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}") == raw


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ("v=DKIM1; k=rsa; p=", "revoked"),
        ("v=DKIM1; k=rsa", "no p= tag"),
        ("v=DKIM1; p=***", "not base64"),
        ("v=DKIM2; p=AAAA", "not DKIM1"),
        ("v=DKIM1; k=dsa; p=AAAA", "neither rsa nor ed25519"),
        ("v=DKIM1; p=AAAA", "not an RSA public key"),
    ],
)
def test_a_record_without_a_usable_key_says_why(record: str, says: str) -> None:
    with pytest.raises(DkimKeyError, match=says):
        record_public(record)


# -- who sends ---------------------------------------------------------------------------------


def _scenario(**top: object) -> Scenario:
    return parse_scenario(
        {
            "servers": [
                {"name": "sink", "local": True},
                {"name": "secondary", "priority": 20, "postfix": {"relay": "sink"}},
                {
                    "name": "primary",
                    "priority": 10,
                    "postfix": {"relay": "sink", "hostname": "mx1.shop.test"},
                },
            ],
            "routing": {"policy": "failover", "servers": ["primary", "secondary"]},
            "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
            **top,
        }
    )


def test_the_postfix_instances_send_primary_first_with_their_default_identity() -> None:
    found = senders_of(_scenario(), "shop.test", Explicit())
    # addresses in scenario order (secondary is listed first), columns in routing order
    assert [(s.name, s.address, s.helo_name, s.priority) for s in found] == [
        ("primary", "127.0.0.12", "mx1.shop.test", 10),
        ("secondary", "127.0.0.11", "secondary.maildrill.test", 20),
    ]
    assert all(s.dkim == () for s in found)


def test_the_command_line_gives_or_overrides_a_servers_identity() -> None:
    explicit = explicit_of(
        ["secondary=127.0.0.22", "relay3=127.0.0.33"],
        ["relay3=relay3.shop.test"],
        ["secondary=s2", "secondary=s9:esp.example"],
        [],
    )
    found = {s.name: s for s in senders_of(_scenario(), "shop.test", explicit)}
    assert list(found) == ["primary", "secondary", "relay3"]
    assert found["secondary"].address == "127.0.0.22"
    assert [k.name for k in found["secondary"].dkim] == [
        "s2._domainkey.shop.test",
        "s9._domainkey.esp.example",
    ]
    assert (found["relay3"].address, found["relay3"].helo_name) == (
        "127.0.0.33",
        "relay3.shop.test",
    )


@pytest.mark.parametrize(
    ("scenario", "explicit", "says"),
    [
        ({"servers": [{"name": "a", "local": True}]}, Explicit(), "no sending server"),
        ({}, Explicit(sources={"x": "10.1.1.1"}), "10.1.1.1 is outside loopback"),
        ({}, Explicit(sources={"x": "mail"}), "not an IP address"),
        ({}, Explicit(helos={"sink": "sink.test"}), "sink is not a sending server here"),
        ({}, Explicit(keys={"primary": Path("/nonexistent.pem")}), "cannot read"),
    ],
)
def test_who_cannot_be_checked_is_bad_input(
    scenario: dict[str, object], explicit: Explicit, says: str
) -> None:
    if "servers" in scenario:
        made = parse_scenario(
            {**scenario, "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]}}
        )
    else:
        made = _scenario()
    with pytest.raises(SenderError, match=says):
        senders_of(made, "shop.test", explicit)


def test_a_remote_source_is_allowed_when_the_scenario_allows_remote() -> None:
    found = senders_of(
        _scenario(allow_remote=True), "shop.test", Explicit(sources={"x": "192.0.2.7"})
    )
    assert found[-1].address == "192.0.2.7"


# -- DMARC per server -----------------------------------------------------------------------


def _neither(f: DnsFacts) -> DnsFacts:
    """The secondary outside SPF and signing with a key that is not published."""
    return _dkim(status="nxdomain", record="", key_matches=None)(secondary(f, spf="fail"))


@pytest.mark.parametrize(
    ("policy", "fate"), [("reject", "refused"), ("quarantine", "sent to spam")]
)
def test_a_server_with_neither_spf_nor_dkim_fails_dmarc(policy: str, fate: str) -> None:
    facts = _set("dmarc", DmarcFacts("ok", [f"v=DMARC1; p={policy}"]))(_neither(clean()))
    result = compare(facts)
    assert codes(result) == [
        ("spf-not-covered", "secondary"),
        ("dkim-missing", "secondary"),
        ("dmarc-fail", "secondary"),
    ]
    assert result.findings[-1].message.endswith(f"its mail fails DMARC (p={policy}: {fate})")


def test_with_p_none_failing_dmarc_is_no_finding_of_its_own() -> None:
    facts = _set("dmarc", DmarcFacts("ok", ["v=DMARC1; p=none"]))(_neither(clean()))
    assert [c for c, _ in codes(compare(facts))] == ["spf-not-covered", "dkim-missing"]


def test_either_spf_or_an_aligned_key_carries_dmarc() -> None:
    only_dkim = compare(secondary(clean(), spf="fail"))
    assert [c for c, _ in codes(only_dkim)] == ["spf-not-covered"]
    # adkim=s: a key of a subdomain does not align, so DKIM no longer carries it
    strict = _set("dmarc", DmarcFacts("ok", ["v=DMARC1; p=reject; adkim=s"]))(clean())
    strict = _dkim(domain="mail.shop.test")(secondary(strict, spf="fail"))
    assert [c for c, _ in codes(compare(strict))] == ["spf-not-covered", "dmarc-fail"]


# -- the keys a run makes ----------------------------------------------------------------------


def _signer(name: str, selector: str, publish: object) -> SimpleNamespace:
    """A server as part 3's scenario holds it: postfix.dkim {selector, domain, publish}."""
    dkim = DkimSpec(selector=selector, domain="shop.test", publish=publish)
    return SimpleNamespace(name=name, postfix=SimpleNamespace(dkim=dkim))


def test_the_run_publishes_its_key_none_or_another_as_the_scenario_says() -> None:
    keys = run_keys(
        [
            _signer("a", "S1", True),
            _signer("b", "s1", True),  # the same selector and domain: the same key
            _signer("c", "s2", False),
            _signer("d", "s3", "wrong"),
            SimpleNamespace(name="sink", postfix=None),
            SimpleNamespace(name="plain", postfix=SimpleNamespace(dkim=None)),  # signs not
        ]
    )
    assert sorted(keys.signing) == [("s1", "shop.test"), ("s2", "shop.test"), ("s3", "shop.test")]
    assert sorted(keys.txt) == ["s1._domainkey.shop.test", "s3._domainkey.shop.test"]
    assert record_public(keys.txt["s1._domainkey.shop.test"]) == keys.signing[("s1", "shop.test")]
    assert record_public(keys.txt["s3._domainkey.shop.test"]) != keys.signing[("s3", "shop.test")]


def test_records_go_into_the_zone_that_holds_their_name() -> None:
    zones = parse_zones({"shop.test": {"TXT": "v=spf1 -all"}, "other.test": {"A": "127.0.0.1"}})
    out = with_txt(zones, {"s1._domainkey.shop.test": "v=DKIM1; p=", "x.nowhere.test": "v=1"})
    shop = next(z for z in out if z.origin == "shop.test")
    assert "s1._domainkey.shop.test" in shop.names()
    assert [z.records for z in out if z.origin == "other.test"] == [
        z.records for z in zones if z.origin == "other.test"
    ]
    assert not any("nowhere" in n for z in out for n in z.names())
