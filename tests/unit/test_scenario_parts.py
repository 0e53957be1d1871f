"""The scenario's typed `sink:` table, its cross-part checks, and defaults kept in one place."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.client import Server, Timeouts
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers
from loadtest.scenario import ScenarioError, parse_scenario
from loadtest.scenario_checks import CHECKS
from sinks.config import UpstreamConfig
from tests.helpers import REPO

SCENARIOS = REPO / "scenarios"


def scenario(servers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "servers": servers,
        "routing": {"servers": [servers[0]["name"]]},
        "campaign": {"schedule": [{"duration_s": 10, "rate": 1}]},
        **extra,
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, "s.yaml")
    return str(raised.value)


def test_the_sink_table_is_typed_where_the_scenario_reads_it():
    backup_sink = {"mode": "backup-mx", "upstream": "primary"}
    front_sink = {"mode": "proxy", "upstream": {"port": 2600}}
    servers = [
        {"name": "primary", "local": True},
        {"name": "backup", "local": True, "sink": backup_sink},
        {"name": "front", "local": True, "sink": front_sink},
        {"name": "remote", "port": 2600},
    ]
    primary, backup, front, remote = parse_scenario(scenario(servers)).servers
    modes = [s.mode for s in (primary, backup, front, remote)]
    assert modes == ["sink", "backup-mx", "proxy", ""]
    assert backup.sink.upstream_server == "primary"
    assert backup.sink.upstream_address is None
    assert front.sink.upstream_address == UpstreamConfig(port=2600)
    assert front.sink.upstream_server is None
    # A named upstream resolves to where that server listens; an address is taken as is.
    config = backup.sink_config({"primary": ("127.0.0.1", 2525)})
    assert (config.mode, config.upstream) == ("backup-mx", UpstreamConfig(port=2525))
    assert front.sink_config().upstream == UpstreamConfig(port=2600)


def test_the_other_sink_settings_go_to_the_sink_as_written():
    parsed = parse_scenario(
        scenario([{"name": "mx", "local": True, "sink": {"size_limit": 1234, "starttls": True}}])
    )
    config = parsed.servers[0].sink_config()
    assert (config.size_limit, config.tls is not None, config.name) == (1234, True, "mx")


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_a_scenario_sent_to_locust_workers_reads_back_the_same(path: Path):
    """Workers get model_dump(mode="json"): the sink tables come back as they were written
    (a non-local server's empty table stays empty, or it would need local: true)."""
    parsed = parse_scenario(yaml.safe_load(path.read_text()), path.name)
    dumped = parsed.model_dump(mode="json")
    again = parse_scenario(copy.deepcopy(dumped), "from the master")
    assert again.model_dump(mode="json") == dumped
    raw = yaml.safe_load(path.read_text())
    # an `mx:` entry is one server per MX host of its domain, in its place
    made = [
        w for w in raw["servers"]
        for _ in range(sum(s.get("mx") == w["mx"] for s in dumped["servers"]) if "mx" in w else 1)
    ]  # fmt: skip
    for written, server in zip(made, dumped["servers"], strict=True):
        assert set(server["sink"]) == set(written.get("sink") or {})


@pytest.mark.parametrize(
    ("sink", "local", "expected"),
    [
        (5, True, "servers[0].sink: Input should be a valid dictionary"),
        ({"size_limit": 1}, False, "servers[0]: sink settings need local: true"),
        ({"port": 1}, True, "servers[0]: sink.port: set it on the server, not in sink"),
        ({"mode": "relay"}, True, "servers[0]: sink: mode: Input should be 'sink', 'backup-mx'"),
        ({"mode": "proxy"}, True, "servers[0]: sink: mode proxy needs an upstream"),
        ({"mode": "proxy", "upstream": "mx"}, True, "sink.upstream 'mx' is not another server"),
    ],
)
def test_sink_table_errors_read_as_a_sink_configs(sink: Any, local: bool, expected: str):
    assert expected in error_of(scenario([{"name": "mx", "local": local, "sink": sink}]))


def test_an_upstream_outside_loopback_needs_allow_remote():
    servers = [
        {"name": "mx", "local": True, "sink": {"mode": "proxy",
                                               "upstream": {"host": "192.0.2.1", "port": 25}}}
    ]  # fmt: skip
    assert "sink.upstream 192.0.2.1 is outside loopback" in error_of(scenario(servers))
    parse_scenario(scenario(servers, allow_remote=True))


def test_the_checks_run_in_order_and_the_first_problem_is_reported():
    """Two problems at once: the one of the earlier check is the one reported."""
    assert [c.__name__ for c in CHECKS][:2] == ["server_names_unique", "routes_name_servers"]
    data = scenario([{"name": "mx"}, {"name": "mx"}], slo=["nonsense"])
    data["routing"] = {"servers": ["nowhere"]}
    assert "names must be unique; repeated: mx" in error_of(data)
    data["servers"][1]["name"] = "other"
    assert "routing: unknown server 'nowhere'" in error_of(data)
    data["routing"] = {}
    assert "slo[0]" in error_of(data)


def test_routing_defaults_are_the_runtime_types_own():
    parsed = parse_scenario(scenario([{"name": "mx"}]))
    assert parsed.retry_policy() == RetryPolicy()
    assert parsed.timeouts() == Timeouts()
    circuit = parsed.routing.circuit
    assert (circuit.threshold, circuit.cooldown_s) == (Breakers().threshold, Breakers().cooldown_s)
    assert parsed.client_servers()["mx"] == Server("mx", "127.0.0.1", 0)
