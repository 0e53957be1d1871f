"""No address outside reserved or allowed domains can be sent, whatever the scenario says.

Two nets, each tried on its own: validation refuses anything that is not a domain name (or a
plain address, or a one-line header value), and the code that builds MAIL FROM, RCPT TO and
the message's headers refuses it again, so a scenario that skipped validation sends nothing.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest import preflight
from loadtest.campaign import MessageFactory, StreamSpec
from loadtest.campaign_spec import StreamModel
from loadtest.cli import main
from loadtest.client import Attempt, Sender, Server, Timeouts, quote_address
from loadtest.scenario import ScenarioError, parse_scenario
from sinks.config import ConfigError, parse_config
from tests.helpers import scenario_refused

FAST = Timeouts(connect=1.0, greeting=2.0, command=2.0, data=2.0, dot=2.0)

# The bypass, then what else a suffix check lets through or an address cuts apart.
NOT_DOMAINS = [
    "gmail.com>.test",
    "yahoo.com,x.test",
    "gmail.com .test",
    "gmail.com\t.test",
    "gmail.com\r\n.test",
    "gmail.com\x00.test",
    "gmail.com;.test",
    "gmail.com<.test",
    "gmail.com(x).test",
    "gmail.com@x.test",
    "user@gmail.com",
    "gmail.com%x.test",
    "gmail.com\\.test",
    'gmail.com".test',
    "gmail.com/.test",
    "gmail.com:25.test",
    "gmail_com.test",
    "[127.0.0.1]",
    "[gmail.com].test",
    "",
    ".test",
    "a..test",
    "gmail.test.",
    "-gmail.test",
    "gmail-.test",
    "gmail.-x.test",
    "x" * 64 + ".test",
    ".".join(["a" * 63] * 4) + ".test",  # 261 characters
    "ü>x.test",  # its A-label keeps the ">": xn-->x-wka.test
    "xn--zz-.test",  # not Punycode
    " gmail.test",
    "gmail.test ",
    "1.2.3.4",  # an address, not a name
]
REAL_DOMAINS = ["gmail.com", "GMAIL.COM", "test.gmail.com", "examplecom", "bücher.de"]
NOT_SENDERS = [
    "news@gmail.com",  # a real domain: a bounce would go there
    "a@example.com>, <b@gmail.com",
    "news@example.com\r\nRCPT TO:<x@gmail.com>",
    "<news@example.com>",
    "News <news@example.com>",
    "news@example.com (x@gmail.com)",
    "news@gmail.com>.test",
    "news@",
    "@example.com",
    "news",
    "news@@example.com",
    "ne ws@example.com",
    "news.@example.com",
    '"a,b"@example.com',
    "news@example.com.",
    "",
]


def scenario(**stream: Any) -> dict[str, Any]:
    return {
        "servers": [{"name": "mx", "port": 2525}],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}], "streams": [stream]},
    }


# -- (a) validation -----------------------------------------------------------------------


@pytest.mark.parametrize("domain", NOT_DOMAINS)
def test_a_recipient_domain_must_be_a_domain_name(domain):
    scenario_refused(scenario(domains={domain: 1}), "s.yaml", "domains")


@pytest.mark.parametrize("domain", NOT_DOMAINS)
def test_an_allowed_domain_must_be_a_domain_name(domain):
    data = scenario()
    data["campaign"]["allowed_recipient_domains"] = [domain]
    scenario_refused(data, "allowed_recipient_domains")


@pytest.mark.parametrize("domain", REAL_DOMAINS)
def test_a_real_domain_needs_allowing(domain):
    scenario_refused(scenario(domains={domain: 1}), "allowed_recipient_domains")


@pytest.mark.parametrize("sender", NOT_SENDERS)
def test_a_sender_must_be_a_plain_address_in_a_reserved_or_allowed_domain(sender):
    scenario_refused(scenario(sender=sender), "sender")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Sale\r\nBcc: victim@gmail.com"),
        ("subject", "Sale\nTo: victim@gmail.com"),
        ("subject", "Sale\x00"),
        ("name", "promo\r\nCc: victim@gmail.com"),
        ("name", "promo\x1b"),
    ],
)
def test_a_header_value_is_one_line(field, value):
    scenario_refused(scenario(**{field: value}), field)


def test_a_sink_hostname_is_a_host_name():
    """It goes into the banner and the EHLO reply: a line break would add a reply."""
    for bad in ("mx.test\r\n250 fake", "mx.test\n", "mx .test", "mx>.test", ""):
        with pytest.raises(ConfigError, match="hostname"):
            parse_config({"sinks": [{"name": "mx", "hostname": bad}]})
        data = scenario()
        data["servers"] = [{"name": "mx", "local": True, "sink": {"hostname": bad}}]
        scenario_refused(data, "hostname")
    assert parse_config({"sinks": [{"name": "mx", "hostname": "mx1.maildrill.test"}]})


def test_helo_name_is_a_host_name_or_address_literal():
    for bad in ("mx.test\r\nRCPT TO:<x@gmail.com>", "mx test", ""):
        data = scenario()
        data["servers"][0]["helo_name"] = bad
        scenario_refused(data, "helo_name")
    for good in ("mx.maildrill.test", "[127.0.0.1]", "[IPv6:::1]"):
        data = scenario()
        data["servers"][0]["helo_name"] = good
        assert parse_scenario(data).servers[0].helo_name == good


def test_allowed_and_idna_domains_are_sent_as_a_labels():
    data = scenario(domains={"bücher.test": 1, "Gmail.COM": 1}, sender="news@bücher.test")
    data["campaign"]["allowed_recipient_domains"] = ["gmail.com"]
    parsed = parse_scenario(data)
    assert parsed.campaign.streams[0].domains == {"xn--bcher-kva.test": 1, "gmail.com": 1}
    assert parsed.campaign.streams[0].sender == "news@xn--bcher-kva.test"
    # Allowed by its Unicode form, sent to its A-label.
    data = scenario(domains={"xn--bcher-kva.de": 1})
    data["campaign"]["allowed_recipient_domains"] = ["bücher.de"]
    assert parse_scenario(data).campaign.allowed_recipient_domains == ["xn--bcher-kva.de"]


def test_validate_prints_one_line_naming_file_and_field(tmp_path, capsys):
    path = tmp_path / "bypass.yaml"
    path.write_text(
        "servers: [{name: mx, port: 2525}]\n"
        "campaign:\n"
        "  schedule: [{duration_s: 1, rate: 1}]\n"
        '  streams: [{domains: {"gmail.com>.test": 1, "yahoo.com,x.test": 1}}]\n'
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert str(path) in err
    assert "campaign.streams[0].domains" in err
    assert "gmail.com>.test" in err


@pytest.mark.parametrize(
    "rcpt", ["x@gmail.com>.test", "x@gmail.com,.test", "x@gmail.com", "x@gmail.com .invalid", "x"]
)
def test_check_rcpt_is_held_to_the_same_rule(rcpt, capsys):
    assert main(["check", "127.0.0.1:1", "--transaction", "--rcpt", rcpt]) == 2
    assert "--rcpt" in capsys.readouterr().err


# What goes on the wire, whatever the scenario asked for: an independent reading of RFC 2606
# and RFC 6761, not the code under test.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SAFE_PATH = re.compile(
    rf"<[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@(?:{_LABEL}\.)*"
    r"(?:test|example|invalid|localhost|example\.com|example\.net|example\.org)>"
)
PIECES = [
    *("gmail.com", "yahoo", ".test", ".example", ".invalid", "example.com", "xn--", "a"),
    *(">", ",", "<", "@", " ", "\r\n", ".", "-", "_", "ü", "\u3002", "[", "]", ";", "\\", '"'),
]
pieced = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join)
hostile = st.one_of(pieced, st.text(min_size=0, max_size=30))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain=hostile, sender_domain=hostile)
def test_whatever_validates_goes_only_to_reserved_domains(domain, sender_domain):
    try:
        parsed = parse_scenario(scenario(domains={domain: 1}, sender=f"news@{sender_domain}"))
    except ScenarioError:
        return
    factory = MessageFactory(parsed.streams(), "run", seed=1)
    for index in range(3):
        m = factory.build(index)
        assert _SAFE_PATH.fullmatch(quote_address(m.sender)), m.sender
        for rcpt in m.recipients:
            assert _SAFE_PATH.fullmatch(quote_address(rcpt)), rcpt


# -- (b) at send time, without validation -------------------------------------------------


@pytest.mark.parametrize("domain", ["gmail.com>.test", "yahoo.com,x.test", "gmail.com"])
def test_the_factory_refuses_what_validation_would(domain):
    with pytest.raises(ValueError, match="domain"):
        MessageFactory([StreamSpec(domains={domain: 1})], "run")
    unvalidated = StreamModel.model_construct(
        **{**StreamModel().model_dump(), "domains": {domain: 1}}
    )
    with pytest.raises(ValueError, match="domain"):
        MessageFactory([unvalidated.spec()], "run")


@pytest.mark.parametrize(
    "stream",
    [
        StreamSpec(sender="news@gmail.com"),
        StreamSpec(sender="a@example.com>, <b@gmail.com"),
        StreamSpec(subject="Sale\r\nBcc: victim@gmail.com"),
        StreamSpec(name="promo\r\nCc: victim@gmail.com"),
    ],
)
def test_the_factory_refuses_senders_and_header_values(stream):
    with pytest.raises(ValueError, match="stream"):
        MessageFactory([stream], "run")


def test_the_factory_sends_to_allowed_domains_only_when_told():
    stream = StreamSpec(domains={"gmail.com": 1})
    with pytest.raises(ValueError, match=r"gmail\.com"):
        MessageFactory([stream], "run")
    message = MessageFactory([stream], "run", allowed_domains=["gmail.com"]).build(0)
    assert message.recipients[0].endswith("@gmail.com")


def envelopes(sinks, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """(MAIL FROM, RCPT TOs) of every message `name` journals from now on."""
    sink = sinks.sink(name)
    seen: list[tuple[str, tuple[str, ...]]] = []
    journal = sink.received

    def received(server, envelope, *args):
        seen.append((envelope.mail_from, tuple(envelope.rcpt_tos)))
        return journal(server, envelope, *args)

    sink.received = received
    return seen


def attempt(msg_id: str) -> Attempt:
    return Attempt(msg_id, "promotional", 1, "mx", 0.0, 0.0, 0.0)


BODY = b"From: news@example.com\r\nSubject: x\r\nX-Maildrill-Id: m\r\n\r\nHello.\r\n"


@pytest.mark.parametrize(
    ("mail_from", "rcpts"),
    [
        ("news@example.com", ("user1@gmail.com>.test",)),
        ("news@example.com", ("user1@yahoo.com,x.test",)),
        ("news@example.com", ("ok@gmail.test", "user1@gmail.com")),
        ("news@example.com", ("ok@gmail.test", "<user1@gmail.com>")),
        ("news@example.com", ("Someone <user1@gmail.com>",)),
        ("news@gmail.com", ("ok@gmail.test",)),
        ("news@example.com>, <b@gmail.com", ("ok@gmail.test",)),
        ("news@example.com", ()),
    ],
)
def test_the_sender_refuses_at_the_rcpt_and_nothing_reaches_the_server(
    start_sinks, mail_from, rcpts
):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    seen = envelopes(sinks, "mx")
    sender = Sender({"mx": Server("mx", "127.0.0.1", sinks.port("mx"), timeouts=FAST)})
    try:
        with pytest.raises(ValueError, match=r"sender|recipient"):
            sender.send("mx", attempt("bad"), mail_from, rcpts, BODY)
        # The same sender still works, and the server saw only the good message.
        good = sender.send("mx", attempt("good"), "news@example.com", ("ok@gmail.test",), BODY)
        assert good.code == 250
    finally:
        sender.close()
    assert seen == [("news@example.com", ("ok@gmail.test",))]


def test_the_sender_sends_to_allowed_domains_when_told(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    seen = envelopes(sinks, "mx")
    servers = {"mx": Server("mx", "127.0.0.1", sinks.port("mx"), timeouts=FAST)}
    sender = Sender(servers, allowed_domains=["gmail.com"])
    try:
        assert sender.send("mx", attempt("a"), "news@gmail.com", ("u@gmail.com",), BODY).code == 250
        with pytest.raises(ValueError, match=r"yahoo\.com"):
            sender.send("mx", attempt("b"), "news@example.com", ("u@yahoo.com",), BODY)
    finally:
        sender.close()
    assert seen == [("news@gmail.com", ("u@gmail.com",))]


def test_a_whole_campaign_reaches_a_real_sink_in_reserved_domains(start_sinks):
    data = scenario(domains={"gmail.test": 1, "bücher.test": 1, "example.com": 1}, recipients_max=3)
    parsed = parse_scenario(data)
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    seen = envelopes(sinks, "mx")
    sender = Sender({"mx": Server("mx", "127.0.0.1", sinks.port("mx"), timeouts=FAST)})
    factory = MessageFactory(parsed.streams(), "run", seed=3)
    try:
        for index in range(20):
            m = factory.build(index)
            assert sender.send("mx", attempt(m.msg_id), m.sender, m.recipients, m.data).code == 250
    finally:
        sender.close()
    assert len(seen) == 20
    for mail_from, rcpts in seen:
        assert _SAFE_PATH.fullmatch(f"<{mail_from}>"), mail_from
        for rcpt in rcpts:
            assert _SAFE_PATH.fullmatch(f"<{rcpt}>"), rcpt
    assert any(r.endswith("@xn--bcher-kva.test") for _, rcpts in seen for r in rcpts)


def test_preflight_refuses_a_real_recipient_before_mail_from(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    seen = envelopes(sinks, "mx")
    target = preflight.Target("mx", "127.0.0.1", sinks.port("mx"))
    for rcpt in ("x@gmail.com>.test", "x@gmail.com"):
        options = preflight.Options(timeout_s=2.0, transaction=True, recipient=rcpt)
        with pytest.raises(ValueError, match="recipient"):
            preflight.check([target], options, preflight.Expectations(), 14.0)
    assert seen == []


def test_smtplib_would_have_sent_the_cut_address():
    """Why the send-time check matters: quoting cuts a raw string at its first '>' or ','."""
    assert quote_address("user1@gmail.com>.test") == "<user1@gmail.com>"
    assert smtplib.quoteaddr("user1@yahoo.com,x.test") == "<user1@yahoo.com>"


def test_bundled_scenarios_still_validate():
    for path in sorted(Path("scenarios").glob("*.yaml")):
        from loadtest.scenario import load_scenario

        load_scenario(path)
