"""`maildrill sinks`' config of a scenario's local sinks keeps its `allow_remote`: a proxy
relaying to an address outside loopback, which the scenario allows, is built (it was
refused by the sinks' own check, in pydantic's many lines, as if never allowed)."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.scenario import ScenarioError, parse_scenario
from loadtest.sink_fleet import sinks_file


def relaying(allow_remote: bool) -> dict[str, Any]:
    return {
        "allow_remote": allow_remote,
        "servers": [{"name": "proxy", "local": True,
                     "sink": {"mode": "proxy", "upstream": {"host": "192.0.2.10", "port": 25}}}],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }  # fmt: skip


def test_an_allowed_upstream_outside_loopback_is_built() -> None:
    config = sinks_file(parse_scenario(relaying(allow_remote=True)))
    assert config.allow_remote
    (sink,) = config.sinks
    assert sink.upstream is not None
    assert (sink.upstream.host, sink.upstream.port) == ("192.0.2.10", 25)


def test_without_allow_remote_it_is_refused_at_the_scenario() -> None:
    with pytest.raises(ScenarioError, match="outside loopback; set allow_remote: true"):
        parse_scenario(relaying(allow_remote=False))
