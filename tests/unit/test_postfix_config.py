"""A Postfix server's settings cannot move it off loopback, nor inject a line of main.cf.

Without `allow_remote: true`, no parameter that chooses where Postfix listens, relays,
accepts mail from or looks things up may be set, and no value may name a lookup table or a
service address; the parameters maildrill sets for every instance are never the user's;
nothing reaches main.cf or master.cf with a line break. The generated files are checked
as text (no Postfix needed) and, where Postfix is installed, read back with `postconf`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.postfix import PostfixError, PostfixInstance
from loadtest.scenario import parse_scenario
from tests.helpers import scenario_refused

# Each chooses where mail goes, where Postfix listens, whom it accepts mail from or what it
# looks up (a map may be tcp:, ldap:, socketmap:inet:...), or runs a command.
DANGEROUS = {
    "relayhost": "[smtp.gmail.com]:25",
    "inet_interfaces": "all",
    "mynetworks": "0.0.0.0/0",
    "mynetworks_style": "subnet",
    "inet_protocols": "all",
    "proxy_interfaces": "203.0.113.1",
    "transport_maps": "inline:{gmail.com=smtp:[smtp.gmail.com]:25}",
    "default_transport": "smtp:[smtp.gmail.com]:25",
    "relay_transport": "smtp:[smtp.gmail.com]",
    "local_transport": "smtp:[smtp.gmail.com]",
    "virtual_transport": "smtp:[smtp.gmail.com]",
    "mailbox_transport": "smtp:[smtp.gmail.com]",
    "fallback_transport": "smtp:[smtp.gmail.com]",
    "smtp_bind_address": "203.0.113.1",
    "smtp_bind_address6": "2001:db8::1",
    "fallback_relay": "[smtp.gmail.com]",
    "smtp_fallback_relay": "[smtp.gmail.com]",
    "sender_dependent_relayhost_maps": "inline:{a@example.com=[smtp.gmail.com]}",
    "sender_dependent_default_transport_maps": "tcp:203.0.113.1:9999",
    "address_verify_relayhost": "[smtp.gmail.com]",
    "content_filter": "smtp:[smtp.gmail.com]:25",
    "smtpd_proxy_filter": "203.0.113.1:10025",
    "smtpd_milters": "inet:203.0.113.1:8891",
    "non_smtpd_milters": "inet:203.0.113.1:8891",
    "header_checks": "regexp:/etc/postfix/header_checks",
    "always_bcc": "archive@gmail.com",
    "sender_bcc_maps": "inline:{a@example.com=b@gmail.com}",
    "recipient_bcc_maps": "inline:{a@example.com=b@gmail.com}",
    "virtual_alias_maps": "inline:{a@example.com=b@gmail.com}",
    "canonical_maps": "tcp:203.0.113.1:9999",
    "luser_relay": "everything@gmail.com",
    "bounce_notice_recipient": "admin@gmail.com",
    "smtpd_recipient_restrictions": "check_policy_service inet:203.0.113.1:9998",
    "smtpd_relay_restrictions": "permit",
    "smtpd_restriction_classes": "mine",
    "mailbox_command": "/usr/bin/curl http://203.0.113.1/",
    "relay_domains": "gmail.com",
    "mydestination": "gmail.com",
    "myhostname": "mx.gmail.com",
    "queue_directory": "/var/spool/postfix",
    "maillog_file": "/etc/cron.d/x",
    "import_environment": "LD_PRELOAD=/tmp/x.so",
    "dnssec_probe": "ns:gmail.com",
    "smtpd_authorized_xclient_hosts": "0.0.0.0/0",
    "permit_mx_backup_networks": "0.0.0.0/0",
}
# Set by maildrill for every instance: refused even with allow_remote.
OWNED = ["inet_interfaces", "mynetworks", "inet_protocols", "proxy_interfaces", "myhostname",
         "queue_directory", "maillog_file", "import_environment", "mydestination", "relayhost",
         "transport_maps"]  # fmt: skip
HARMLESS = {
    "smtp_connect_timeout": "2s",
    "queue_run_delay": "banana",  # postfix check passes it, the queue manager dies: the tests'
    "smtpd_banner": "$myhostname ESMTP drill",
    "smtp_tls_ciphers": "high",
    "tls_high_cipherlist": "aNULL:-aNULL:HIGH:@STRENGTH",
    "default_destination_concurrency_limit": 5,
    "relay_destination_concurrency_limit": 2,
    "maximal_backoff_time": "4s",
    "message_size_limit": 20_000_000,
}
# What every instance gets from maildrill, and the file's other contents.
MAILDRILL_OWN = (
    *("inet_interfaces", "inet_protocols", "mynetworks", "relayhost", "transport_maps"),
    *("myhostname", "mydestination", "queue_directory", "smtpd_relay_restrictions"),
)


def scenario(postfix: dict[str, Any], allow_remote: bool = False) -> dict[str, Any]:
    return {
        "allow_remote": allow_remote,
        "servers": [
            {"name": "mta", "postfix": {"relay": "sink", **postfix}},
            {"name": "sink", "local": True},
        ],
        "routing": {"servers": ["mta"]},
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }


@pytest.mark.parametrize(("name", "value"), DANGEROUS.items())
def test_each_dangerous_parameter_is_refused_without_allow_remote(name, value):
    scenario_refused(scenario({"settings": {name: value}}), "s.yaml", "postfix.settings", name)


@pytest.mark.parametrize("name", OWNED)
def test_parameters_maildrill_sets_are_refused_even_with_allow_remote(name):
    data = scenario({"settings": {name: DANGEROUS[name]}}, allow_remote=True)
    scenario_refused(data, name, "maildrill")


def test_allow_remote_lets_routing_parameters_through():
    extra = {"smtp_fallback_relay": "[smtp.example.net]:25", "smtpd_milters": "inet:10.0.0.9:1"}
    data = scenario({"settings": extra}, allow_remote=True)
    assert parse_scenario(data).servers[0].postfix.settings == extra


@pytest.mark.parametrize(
    "value", ["tcp:203.0.113.1:9999", "proxy:ldap:/x", "socketmap:inet:10.0.0.1:99:x", "inet:h:1"]
)
def test_a_value_naming_a_table_or_service_needs_allow_remote(value):
    """Even under a name maildrill does not know (Postfix reads any name a value expands)."""
    scenario_refused(scenario({"settings": {"my_own_parameter": value}}), "my_own_parameter")
    scenario_refused(scenario({"settings": {"smtpd_banner": value}}), "smtpd_banner")


@pytest.mark.parametrize(
    "postfix",
    [
        {"hostname": "mx.test\ninet_interfaces = all"},
        {"hostname": "mx.test\r\nmynetworks = 0.0.0.0/0"},
        {"hostname": "mx.test mynetworks"},
        {"hostname": "mx>.test"},
        {"hostname": ""},
        {"settings": {"smtp_connect_timeout": "2s\ninet_interfaces = all"}},
        {"settings": {"smtp_connect_timeout": "2s\rrelayhost = [smtp.gmail.com]"}},
        {"settings": {"smtp_connect_timeout": "2s\x00"}},
        {"settings": {"smtp_connect_timeout\ninet_interfaces": "all"}},
        {"settings": {"inet_interfaces ": "all"}},
        {"settings": {"smtp_connect_timeout = 1s\nrelayhost": "[smtp.gmail.com]"}},
        {"settings": {"": "x"}},
        {"settings": {"a=b": "x"}},
        {"settings": {"#x": "x"}},
        {"routes": {"gmail.com>.test": "sink"}},
        {"routes": {"gmail.test\n": "sink"}},
    ],
)
def test_line_injection_and_malformed_names_are_refused(postfix):
    scenario_refused(scenario(postfix), "postfix")
    scenario_refused(scenario(postfix, allow_remote=True), "postfix")


def test_harmless_settings_pass():
    parsed = parse_scenario(scenario({"settings": HARMLESS, "hostname": "mx1.maildrill.test"}))
    assert parsed.servers[0].postfix.settings == HARMLESS


def test_yaml_booleans_reach_main_cf_as_postfix_booleans():
    """`smtputf8_enable: yes` is YAML's true: main.cf wants `yes`, not `1` or `True`."""
    parsed = parse_scenario(
        scenario({"settings": {"smtputf8_enable": True, "smtpd_tls_received_header": False}})
    )
    assert parsed.servers[0].postfix.settings == {
        "smtputf8_enable": "yes", "smtpd_tls_received_header": "no"
    }  # fmt: skip


# -- the files as generated ---------------------------------------------------------------


def instance(tmp_path: Path, **kwargs: Any) -> PostfixInstance:
    args: dict[str, Any] = {
        "name": "mta",
        "base": tmp_path / "postfix-mta",
        "port": 2525,
        "relay": ("127.0.0.1", 2600),
        "hostname": "mta.maildrill.test",
        "settings": {},
        "routes": {"gmail.test": ("127.0.0.1", 2601)},
    }
    return PostfixInstance(**{**args, **kwargs})


def effective(main_cf: str) -> dict[str, str]:
    """main.cf as Postfix reads it: the last definition wins; indented lines continue."""
    values: dict[str, str] = {}
    last = None
    for line in main_cf.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            assert last is not None
            values[last] += " " + line.strip()
            continue
        name, sep, value = line.partition("=")
        assert sep, line
        last = name.strip()
        values[last] = value.strip()
    return values


def test_main_cf_holds_only_what_maildrill_allows(tmp_path):
    files = instance(tmp_path, settings={k: str(v) for k, v in HARMLESS.items()}).render()
    main_cf = files["main.cf"]
    values = effective(main_cf)
    assert values["inet_interfaces"] == "127.0.0.1"
    assert values["inet_protocols"] == "ipv4"
    assert values["mynetworks"] == "127.0.0.0/8"
    assert values["relayhost"] == "[127.0.0.1]:2600"
    assert values["myhostname"] == "mta.maildrill.test"
    assert values["smtpd_relay_restrictions"] == "permit_mynetworks, reject"
    for name, value in HARMLESS.items():
        assert values[name] == str(value)
    # No line continues another, no line is a stray.
    assert all(not line[:1].isspace() for line in main_cf.splitlines())
    assert files["transport"] == "gmail.test smtp:[127.0.0.1]:2601\n"
    services = [line for line in files["master.cf"].splitlines() if " inet " in line]
    assert services == ["127.0.0.1:2525 inet n - n - - smtpd"]


@pytest.mark.parametrize(("name", "value"), DANGEROUS.items())
def test_render_refuses_what_validation_refuses(tmp_path, name, value):
    """A PostfixInstance built without a scenario (no validation) is held to the same rules."""
    with pytest.raises(PostfixError, match=name):
        instance(tmp_path, settings={name: value}).render()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": "mx.test\ninet_interfaces = all"},
        {"settings": {"smtp_connect_timeout": "1s\ninet_interfaces = all"}},
        {"settings": {"x\ny": "1"}},
        {"relay": ("203.0.113.1", 25)},
        {"relay": ("127.0.0.1]:25\ninet_interfaces = all\n#", 25)},
        {"routes": {"gmail.test": ("203.0.113.1", 25)}},
        {"routes": {"gmail.test smtp:[203.0.113.1]:25\n#": ("127.0.0.1", 25)}},
        {"base": Path("/tmp/x\ninet_interfaces = all\n")},
    ],
)
def test_render_refuses_injection_and_remote_hops(tmp_path, kwargs):
    with pytest.raises(PostfixError):
        instance(tmp_path, **kwargs).render()


def test_render_with_allow_remote_writes_the_routing_parameter(tmp_path):
    extra = {"smtp_fallback_relay": "[smtp.example.net]:25"}
    values = effective(instance(tmp_path, settings=extra, allow_remote=True).render()["main.cf"])
    assert values["smtp_fallback_relay"] == "[smtp.example.net]:25"
    assert values["inet_interfaces"] == "127.0.0.1"
    assert values["relayhost"] == "[127.0.0.1]:2600", "set by postfix.relay, always"


names = st.one_of(
    st.sampled_from([*DANGEROUS, *HARMLESS, "relay_domains", "x_maps"]),
    st.text(alphabet=st.sampled_from("abz_09 =#\n\r\t:$"), min_size=0, max_size=12),
)
values = st.one_of(
    st.sampled_from([*DANGEROUS.values(), "2s", "all", "0.0.0.0/0"]),
    st.text(alphabet=st.sampled_from("ab1 =#\n\r\t:[]$.{}/"), max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.dictionaries(names, values, max_size=4))
def test_whatever_renders_listens_and_relays_on_loopback_only(tmp_path_factory, extra):
    base = tmp_path_factory.mktemp("pf")
    try:
        files = instance(base, settings=extra).render()
    except PostfixError:
        return
    values = effective(files["main.cf"])
    assert values["inet_interfaces"] == "127.0.0.1"
    assert values["mynetworks"] == "127.0.0.0/8"
    assert values["relayhost"] == "[127.0.0.1]:2600"
    assert values["transport_maps"].startswith("texthash:")
    for name, value in values.items():
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name), name
        assert not re.search(r"(tcp|inet|ldap|proxy|socketmap|inline)\s*:", value) or (
            name == "transport_maps"
        ), (name, value)
    assert set(MAILDRILL_OWN) <= set(values)
