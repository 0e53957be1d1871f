"""Each verdict of SPF, DKIM, DMARC and PTR, produced on purpose against an in-memory zone
(sinks.authcheck.ZoneLookup), and the reply each provider gives the failures."""

from __future__ import annotations

import dkim
import pytest

from loadtest.dkim_keys import new_key_pair, txt_value
from sinks.authcheck import Verdict, ZoneLookup, verify_message
from sinks.authcheck.dmarc import aligned, organizational
from sinks.authcheck.enforce import refusal

IP = "127.0.0.11"
HELO = "mx1.shop.test"
FROM = "news@shop.test"


def key_pair() -> tuple[bytes, str]:
    """A fresh RSA key, made as a run makes its keys: the private key in PEM, the public
    one as a DKIM TXT record."""
    private, public = new_key_pair()
    return private, txt_value(public)


PRIVATE, PUBLIC = key_pair()
_, OTHER_PUBLIC = key_pair()


def message(from_addr: str = FROM, *, sign_as: str | None = "shop.test") -> bytes:
    body = (
        f"From: <{from_addr}>\r\nTo: <a@example.test>\r\nSubject: hi\r\n"
        "Message-ID: <1@shop.test>\r\n\r\nhello\r\n"
    ).encode()
    if sign_as is None:
        return body
    signature = dkim.sign(body, b"s1", sign_as.encode(), PRIVATE, include_headers=[b"from"])
    return signature + body


def zone(**drop: bool) -> ZoneLookup:
    """shop.test fully aligned: SPF names 127.0.0.11, DKIM key s1, DMARC p=reject, PTR
    and A for mx1.shop.test. `drop=True` leaves a record out."""
    z = ZoneLookup()
    if not drop.get("spf"):
        z.add("shop.test", "TXT", "v=spf1 ip4:127.0.0.11 -all")
    if not drop.get("dkim"):
        z.add("s1._domainkey.shop.test", "TXT", PUBLIC)
    if not drop.get("dmarc"):
        z.add("_dmarc.shop.test", "TXT", "v=DMARC1; p=reject; adkim=r; aspf=r")
    if not drop.get("ptr"):
        z.add("11.0.0.127.in-addr.arpa", "PTR", "mx1.shop.test")
    z.add("mx1.shop.test", "A", IP)
    return z


def check(z: ZoneLookup, msg: bytes | None = None, ip: str = IP, helo: str = HELO,
          mail_from: str = FROM):  # fmt: skip
    return verify_message(z, peer_ip=ip, helo=helo, mail_from=mail_from, message=msg or message())


def test_an_aligned_signed_message_from_a_listed_address_passes_everything():
    r = check(zone())
    assert (r.spf, r.dkim, r.dmarc, r.ptr) == (Verdict.PASS,) * 4
    assert (r.dkim_domain, r.dmarc_policy, r.spf_domain) == ("shop.test", "reject", "shop.test")
    assert r.fcrdns
    assert r.detail == ""
    for provider in ("gmail", "yahoo", "outlook", "none"):
        assert refusal(provider, r, peer=IP, domain="shop.test") is None


# -- SPF ----------------------------------------------------------------------------


def test_spf_fail_softfail_neutral_none_and_permerror():
    z = zone()
    assert check(z, ip="127.0.0.12").spf is Verdict.FAIL
    z.records[("shop.test", "TXT")] = ["v=spf1 ip4:127.0.0.11 ~all"]
    assert check(z, ip="127.0.0.12").spf is Verdict.SOFTFAIL
    z.records[("shop.test", "TXT")] = ["v=spf1 ?all"]
    assert check(z, ip="127.0.0.12").spf is Verdict.NEUTRAL
    z.records[("shop.test", "TXT")] = ["v=spf1 ip4:127.0.0.11 -all", "v=spf1 -all"]
    assert check(z).spf is Verdict.PERMERROR  # two SPF records (RFC 7208 4.5)
    assert check(zone(spf=True)).spf is Verdict.NONE


def test_spf_temperror_when_the_lookup_times_out():
    z = zone()
    z.timeouts.add("shop.test")
    r = check(z)
    assert r.spf is Verdict.TEMPERROR
    assert r.dkim is Verdict.PASS  # its own name answers


def test_a_null_sender_is_checked_as_postmaster_at_the_helo_name():
    z = zone()
    z.add("mx1.shop.test", "TXT", "v=spf1 a -all")
    r = check(z, mail_from="")
    assert (r.spf, r.spf_domain) == (Verdict.PASS, "mx1.shop.test")


def test_spf_never_asks_the_system_resolver_outside_a_check():
    import spf

    with pytest.raises(spf.TempError, match="no lookup set"):
        spf.DNSLookup("shop.test", "TXT", True, 1)


# -- DKIM ---------------------------------------------------------------------------


def test_dkim_fail_with_a_wrong_key_permerror_without_one_none_unsigned():
    z = zone()
    z.records[("s1._domainkey.shop.test", "TXT")] = [OTHER_PUBLIC]
    assert check(z).dkim is Verdict.FAIL
    assert check(zone(dkim=True)).dkim is Verdict.PERMERROR
    r = check(zone(), message(sign_as=None))
    assert (r.dkim, r.dkim_domain) == (Verdict.NONE, "")


def test_dkim_temperror_when_the_key_lookup_times_out():
    z = zone()
    z.timeouts.add("s1._domainkey.shop.test")
    assert check(z).dkim is Verdict.TEMPERROR


def test_a_tampered_body_fails_dkim():
    msg = message().replace(b"hello", b"HELLO")
    assert check(zone(), msg).dkim is Verdict.FAIL


# -- DMARC --------------------------------------------------------------------------


def test_dmarc_passes_on_either_aligned_spf_or_aligned_dkim():
    assert check(zone(), ip="127.0.0.12").dmarc is Verdict.PASS  # DKIM only
    assert check(zone(), message(sign_as=None)).dmarc is Verdict.PASS  # SPF only


def test_dmarc_fails_when_nothing_aligned_passes():
    r = check(zone(), message(sign_as=None), ip="127.0.0.12")
    assert (r.dmarc, r.dmarc_policy) == (Verdict.FAIL, "reject")


def test_dmarc_fails_on_unaligned_passes_strict_and_relaxed():
    z = zone()
    z.add("s1._domainkey.esp.test", "TXT", PUBLIC)
    z.add("bounce.esp.test", "TXT", "v=spf1 ip4:127.0.0.11 -all")
    r = check(z, message(sign_as="esp.test"), mail_from="b@bounce.esp.test")
    assert (r.spf, r.dkim, r.dmarc) == (Verdict.PASS, Verdict.PASS, Verdict.FAIL)
    # relaxed: a subdomain aligns; strict: it does not
    z.add("news.shop.test", "TXT", "v=spf1 ip4:127.0.0.11 -all")
    msg = message(sign_as=None)
    assert check(z, msg, mail_from="b@news.shop.test").dmarc is Verdict.PASS
    z.records[("_dmarc.shop.test", "TXT")] = ["v=DMARC1; p=quarantine; aspf=s"]
    r = check(z, msg, mail_from="b@news.shop.test")
    assert (r.dmarc, r.dmarc_policy) == (Verdict.FAIL, "quarantine")


def test_dmarc_none_without_a_record_temperror_on_timeout_permerror_when_broken():
    assert check(zone(dmarc=True)).dmarc is Verdict.NONE
    z = zone()
    z.timeouts.add("_dmarc.shop.test")
    assert check(z).dmarc is Verdict.TEMPERROR
    z = zone()
    z.records[("_dmarc.shop.test", "TXT")] = ["v=DMARC1; p=bogus"]
    assert check(z).dmarc is Verdict.PERMERROR


def test_a_subdomain_takes_the_organizational_record_and_its_sp():
    z = zone()
    z.records[("_dmarc.shop.test", "TXT")] = ["v=DMARC1; p=none; sp=reject"]
    r = check(z, message("x@mail.shop.test", sign_as=None), ip="127.0.0.12")
    assert (r.dmarc, r.dmarc_policy) == (Verdict.FAIL, "reject")


def test_alignment_rules():
    assert organizational("a.b.shop.test") == "shop.test"
    assert aligned("mail.shop.test", "shop.test", "r")
    assert not aligned("mail.shop.test", "shop.test", "s")
    assert not aligned("", "shop.test", "r")


# -- PTR ----------------------------------------------------------------------------


def test_ptr_pass_fail_none_and_temperror():
    assert check(zone(ptr=True)).ptr is Verdict.NONE
    r = check(zone(), helo="other.shop.test")
    assert (r.ptr, r.fcrdns) == (Verdict.FAIL, True)  # confirmed, not the HELO name
    z = zone()
    z.records[("mx1.shop.test", "A")] = ["127.0.0.99"]
    r = check(z)
    assert (r.ptr, r.fcrdns) == (Verdict.FAIL, False)  # does not map back
    z = zone()
    z.timeouts.add("11.0.0.127.in-addr.arpa")
    assert check(z).ptr is Verdict.TEMPERROR


# -- what each provider refuses -----------------------------------------------------


def _reply(provider, r):
    reply = refusal(provider, r, peer=IP, domain="shop.test")
    return (reply.code, reply.enhanced) if reply else None


def test_gmail_refuses_dmarc_reject_unauthenticated_and_missing_ptr():
    dmarc_fail = check(zone(), message(sign_as=None), ip="127.0.0.12")
    assert _reply("gmail", dmarc_fail) == (550, "5.7.26")
    assert "DMARC policy" in refusal("gmail", dmarc_fail, peer=IP, domain="shop.test").text
    unauthenticated = check(zone(dmarc=True), message(sign_as=None), ip="127.0.0.12")
    assert _reply("gmail", unauthenticated) == (550, "5.7.26")
    z = zone(dmarc=True)
    z.timeouts.add("shop.test")
    assert _reply("gmail", check(z, message(sign_as=None))) == (421, "4.7.26")
    assert _reply("gmail", check(zone(ptr=True))) == (550, "5.7.25")
    assert _reply("gmail", check(zone(), helo="other.shop.test")) is None  # FCrDNS holds


def test_yahoo_and_outlook():
    dmarc_fail = check(zone(), message(sign_as=None), ip="127.0.0.12")
    assert _reply("yahoo", dmarc_fail) == (554, "5.7.9")
    assert _reply("outlook", dmarc_fail) == (550, "5.7.515")
    spf_only = check(zone(), message(sign_as=None))
    assert spf_only.dmarc is Verdict.PASS
    assert _reply("yahoo", spf_only) is None
    assert _reply("outlook", spf_only) == (550, "5.7.515")  # DKIM must pass too
    quarantine = zone()
    quarantine.records[("_dmarc.shop.test", "TXT")] = ["v=DMARC1; p=quarantine"]
    r = check(quarantine, message(sign_as=None), ip="127.0.0.12")
    assert _reply("yahoo", r) == (554, "5.7.9")  # unauthenticated, not for DMARC
    assert _reply("none", r) is None
