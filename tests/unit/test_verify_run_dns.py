"""A scenario's verifying sink and the run's DNS server: `verify:` without a dns (or
`dns: run`) is written the server's address before the sink starts; without a `dns:`
section it is refused at validation, in one line."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from loadtest.scenario import ScenarioError, parse_scenario
from loadtest.sink_fleet import sinks_file, with_run_dns

ZONES = {"zones": {"shop.test": {"TXT": "v=spf1 ip4:127.0.0.11 -all"}}}
RUN_DNS = ("127.0.0.1", 5353)


def scenario(verify: dict[str, Any], dns: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "servers": [
            {"name": "gmail", "local": True, "sink": {"verify": verify}},
            {"name": "plain", "local": True},
        ],
        "campaign": {"schedule": [{"duration_s": 10, "rate": 1}]},
    }
    if dns:
        data["dns"] = copy.deepcopy(ZONES)
    return data


@pytest.mark.parametrize("verify", [{"enforce": "gmail"}, {"dns": "run", "enforce": "gmail"}])
def test_a_verify_without_dns_gets_the_run_dns_server(verify: dict[str, Any]):
    gmail, plain = parse_scenario(scenario(verify)).servers
    assert gmail.sink.run_dns
    assert not plain.sink.run_dns
    config = gmail.sink_config({}, RUN_DNS)
    assert config.verify is not None
    assert (config.verify.server, config.verify.enforce) == (RUN_DNS, "gmail")
    assert plain.sink_config({}, RUN_DNS).verify is None


def test_a_verify_naming_its_dns_keeps_it_and_needs_no_dns_section():
    gmail = parse_scenario(scenario({"dns": "127.0.0.1:5400"}, dns=False)).servers[0]
    assert not gmail.sink.run_dns
    config = gmail.sink_config({}, RUN_DNS)
    assert config.verify is not None
    assert config.verify.server == ("127.0.0.1", 5400)


@pytest.mark.parametrize("verify", [{}, {"dns": "run"}, {"enforce": "yahoo"}])
def test_a_verify_without_dns_and_no_dns_section_is_refused_in_one_line(verify):
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(scenario(verify, dns=False), "s.yaml")
    text = str(raised.value)
    assert "servers: 'gmail': sink.verify has no dns and the scenario no dns: section" in text
    assert "\n" not in text


def test_the_other_verify_keys_are_still_checked_by_the_sinks_model():
    with pytest.raises(ScenarioError, match="enforce"):
        parse_scenario(scenario({"enforce": "hotmail"}), "s.yaml")
    with pytest.raises(ScenarioError, match="expected host:port"):
        parse_scenario(scenario({"dns": "nowhere"}), "s.yaml")


def test_maildrill_sinks_writes_the_address_in_once_the_server_listens():
    parsed = parse_scenario(scenario({"enforce": "gmail", "deadline_s": 3}))
    config = with_run_dns(sinks_file(parsed), parsed, RUN_DNS)
    by_name = {s.name: s for s in config.sinks}
    verify = by_name["gmail"].verify
    assert verify is not None
    assert (verify.server, verify.enforce, verify.deadline_s) == (RUN_DNS, "gmail", 3)
    assert by_name["plain"].verify is None


def test_a_scenario_with_verify_reads_back_the_same_for_the_workers():
    parsed = parse_scenario(scenario({"enforce": "gmail"}))
    dumped = parsed.model_dump(mode="json")
    assert dumped["servers"][0]["sink"]["verify"] == {"dns": "run", "enforce": "gmail"}
    assert parse_scenario(copy.deepcopy(dumped)).model_dump(mode="json") == dumped
