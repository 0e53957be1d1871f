"""The scenario's `resolver:` (a DNS resolver the user names), without sockets: its forms,
its one-line errors at `maildrill validate` (exit 2), what it changes in the scenario
(any name is looked up through it, not checked against the dns: zones), the DNS faults it
refuses, the consent it needs from `maildrill run` and a worker, and that it travels with
a worker's plan. Lookups through it: tests/integration/test_resolver_named.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest.cli import main
from loadtest.resolver_spec import parse_address
from loadtest.scenario import ScenarioError, parse_scenario
from loadtest.worker_consent import Consent, plan_problem

ZONES: dict[str, Any] = {"shop.test": {"smtp": {"A": "127.0.0.11"}}}


def scenario(**extra: Any) -> dict[str, Any]:
    return {
        "servers": [{"name": "primary", "host": "smtp.shop.test", "port": 2525}],
        "campaign": {"schedule": [{"duration_s": 2, "rate": 1}]},
        **extra,
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        (" 127.0.0.1:53 ", ("127.0.0.1", 53)),
    ],
)
def test_an_address_with_port_53_by_default(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize(
    ("resolver", "expected"),
    [
        (
            "dns.example.com",
            "resolver.server: 'dns.example.com': give the resolver's address, "
            "not a name: its name would be asked of the system's resolver",
        ),
        ("localhost:53", "give the resolver's address, not a name"),
        ("127.0.0.1:0", "resolver.server: '127.0.0.1:0': port '0' is not 1-65535"),
        ("127.0.0.1:65536", "port '65536' is not 1-65535"),
        ("127.0.0.1:", "port '' is not 1-65535"),
        ("127.0.0.1:dns", "port 'dns' is not 1-65535"),
        ("300.1.1.1", "'300.1.1.1': not an address"),
        ("1.2.3.4:5:6", "not an address, expected HOST[:PORT]"),
        ("[::1]5353", "expected HOST[:PORT], IPv6 as [ADDRESS]:PORT"),
        (53, "resolver: expected HOST[:PORT] or {server: HOST[:PORT], timeout_ms: N}"),
        ({"server": "127.0.0.1", "timeout_ms": 0}, "resolver.timeout_ms: Input should be greater"),
        ({"server": "127.0.0.1", "timeout_ms": 60_000}, "resolver.timeout_ms: 60000 is more"),
        ({"server": "127.0.0.1", "port": 53}, "resolver.port: Extra inputs are not permitted"),
        ({"timeout_ms": 100}, "resolver.server: Field required"),
    ],
)
def test_a_bad_resolver_is_one_line(resolver, expected):
    assert expected in error_of(scenario(resolver=resolver, allow_remote=True))


def test_a_resolver_needs_allow_remote():
    assert error_of(scenario(resolver="127.0.0.1:5353")) == (
        "s.yaml: resolver: 127.0.0.1:5353 needs allow_remote: true (a resolver you name may "
        "answer for real names, with addresses outside loopback; maildrill run then asks for "
        "--yes)"
    )


def test_with_a_resolver_any_name_is_looked_up_through_it_not_checked_against_the_zones():
    parsed = parse_scenario(
        scenario(
            resolver={"server": "127.0.0.1:5353", "timeout_ms": 500},
            allow_remote=True,
            dns={"zones": ZONES},
            servers=[
                {"name": "primary", "host": "mail.other.test", "port": 2525},  # not in zones
                {"name": "secondary", "host": "127.0.0.12", "port": 2525},
            ],
        )
    )
    servers = parsed.client_servers()
    assert servers["primary"].resolve
    assert not servers["secondary"].resolve
    resolver = parsed.senders_resolver(run_dns=("127.0.0.1", 9))  # the run's: not asked
    assert resolver is not None
    assert (resolver.host, resolver.port, resolver.timeout) == ("127.0.0.1", 5353, 0.5)


def test_without_one_the_senders_ask_the_run_dns_server():
    parsed = parse_scenario(scenario(dns={"zones": ZONES}))
    assert parsed.senders_resolver(None) is None
    resolver = parsed.senders_resolver(("127.0.0.1", 5300))
    assert resolver is not None
    assert (resolver.host, resolver.port) == ("127.0.0.1", 5300)


def test_a_worker_gets_the_same_resolver_with_the_plan():
    """The plan carries the scenario as JSON (locust_glue.start); the worker reads it back."""
    sent = parse_scenario(scenario(resolver="[::1]:5353", allow_remote=True))
    got = parse_scenario(sent.model_dump(mode="json"), "scenario from the master")
    assert got.resolver == sent.resolver
    assert got.resolver is not None
    assert got.resolver.address == ("::1", 5353)
    assert got.senders_resolver(None) is not None


def test_dns_faults_are_refused_with_a_resolver():
    """They act on the run's DNS server, which the senders do not ask then."""
    message = error_of(
        scenario(
            resolver="127.0.0.1:5353",
            allow_remote=True,
            dns={"zones": ZONES},
            faults=[{"at": 1, "target": "dns", "kind": "servfail", "duration": 1}],
        )
    )
    assert message == (
        "s.yaml: faults[0].target: dns is the run's DNS server, which the senders do not ask "
        "with resolver: 127.0.0.1:5353; change the records on that resolver instead (or drop "
        "resolver: to drill the dns: zones)"
    )


def test_an_mx_entry_is_not_read_from_data_alone():
    """The MX set comes from the resolver as the file is loaded (loadtest.resolver_mx)."""
    message = error_of(
        scenario(servers=[{"mx": "shop.test", "port": 25}], resolver="127.0.0.1", allow_remote=True)
    )
    assert "an mx: entry with resolver: is read from that resolver as the scenario file" in message


def test_a_worker_needs_no_yes_for_names_of_the_run_zones_without_allow_remote():
    """Their answers are held to loopback as mail is sent (loadtest.dns_route); with
    allow_remote they may be anywhere, and the worker's own yes is needed again."""
    zoned = scenario(dns={"zones": ZONES})
    no_yes = Consent(remote=False, secrets=False, master_loopback=True)
    assert plan_problem(parse_scenario(zoned), no_yes) is None
    problem = plan_problem(parse_scenario({**zoned, "allow_remote": True}), no_yes)
    assert problem is not None
    assert "primary smtp.shop.test:2525" in problem


def test_a_worker_needs_its_own_yes_for_a_resolver():
    parsed = parse_scenario(scenario(resolver="127.0.0.1:5353", allow_remote=True))
    problem = plan_problem(parsed, Consent(remote=False, secrets=False, master_loopback=True))
    assert problem is not None
    assert "what the resolver 127.0.0.1:5353 names" in problem
    assert plan_problem(parsed, Consent(remote=True, secrets=False, master_loopback=True)) is None


@pytest.mark.parametrize(
    ("yaml_resolver", "expected"),
    [
        ("resolver: 127.0.0.1:5353\n", "resolver: 127.0.0.1:5353 needs allow_remote: true"),
        ("allow_remote: true\nresolver: dns.example\n", "give the resolver's address, not a"),
        ("allow_remote: true\nresolver: '127.0.0.1:70000'\n", "port '70000' is not 1-65535"),
        # The MX set is never asked of a resolver the scenario may not use.
        (
            "resolver: 127.0.0.1:5353\nservers: [{mx: shop.test, port: 25}]\n",
            "resolver: 127.0.0.1:5353 needs allow_remote: true",
        ),
        (
            "allow_remote: true\nresolver: 'x:1'\nservers: [{mx: shop.test, port: 25}]\n",
            "resolver.server: 'x:1': give the resolver's address",
        ),
    ],
)
def test_validate_says_it_in_one_line_and_exits_2(tmp_path: Path, capsys, yaml_resolver, expected):
    path = tmp_path / "s.yaml"
    servers = (
        ""
        if "servers:" in yaml_resolver
        else "servers: [{name: p, host: smtp.shop.test, port: 25}]\n"
    )
    path.write_text(servers + yaml_resolver + "campaign: {schedule: [{duration_s: 2, rate: 1}]}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert expected in err


def test_run_asks_for_yes_with_a_resolver(tmp_path: Path, capsys):
    """Even on loopback: its answers may be anywhere. Refused before anything starts."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "allow_remote: true\nresolver: 127.0.0.1:5353\n"
        "servers: [{name: p, host: smtp.shop.test, port: 25}]\n"
        "campaign: {schedule: [{duration_s: 2, rate: 1}]}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "(any server the resolver 127.0.0.1:5353 names): pass --yes to confirm" in err
    assert not (tmp_path / "run").exists()


def test_run_asks_for_yes_for_names_of_its_zones_under_allow_remote(tmp_path: Path, capsys):
    """With allow_remote the run's DNS answers are no longer held to loopback as mail is
    sent: a name of its zones may lead anywhere, so `run` asks as for a remote target."""
    path = tmp_path / "s.yaml"
    scenario_text = (
        "servers: [{name: p, host: smtp.shop.test, port: 25}]\n"
        "dns: {zones: {shop.test: {smtp: {A: 127.0.0.11}}}}\n"
        "campaign: {schedule: [{duration_s: 2, rate: 1}]}\n"
    )
    path.write_text("allow_remote: true\n" + scenario_text)
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "(p smtp.shop.test (its addresses from the dns: zones)): pass --yes" in err
    assert not (tmp_path / "run").exists()
