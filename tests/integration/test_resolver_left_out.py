"""A server named by DNS that the scenario's `resolver:` gives no address for: the run's
pre-flight check and `maildrill check --scenario` say so as a flag naming the resolver, and
never hand the name to the system's resolver (getaddrinfo, watched here). The "resolver" is
a UDP socket this test binds on 127.0.0.1 and never answers from (a timeout), or the DNS
server of tests.helpers.dns_child (NXDOMAIN)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.cli import main
from loadtest.orchestrate import Drill
from loadtest.scenario import load_scenario, read_yaml
from loadtest.sink_fleet import preset_addresses
from tests.helpers import dns_child

NAMED = "smtp.shop.test"


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A 'resolver' that never answers: a bound UDP socket nobody reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name given to the system's resolver in this process (none may be a scenario's)."""
    names: list[str] = []
    real = socket.getaddrinfo

    def watched(host: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    return names


def scenario_file(tmp_path: Path, resolver: str, *servers: str) -> Path:
    path = tmp_path / "left-out.yaml"
    listed = "\n".join(f"  - {s}" for s in servers)
    path.write_text(
        f"""\
name: left-out
allow_remote: true
resolver: {{server: "{resolver}", timeout_ms: 200}}
servers:
{listed}
campaign:
  schedule: [{{duration_s: 1, rate: 1}}]
"""
    )
    return path


def test_preflight_flags_a_server_the_resolver_gave_no_address_for(silent, asked, tmp_path):
    where = f"127.0.0.1:{silent.getsockname()[1]}"
    path = scenario_file(tmp_path, where, f"{{name: shop, host: {NAMED}, port: 2525}}")
    scenario = load_scenario(path)
    drill = Drill(scenario, read_yaml(path), tmp_path / "run", "left-out", out=io.StringIO())
    drill.addresses = preset_addresses(scenario)  # as _start_sinks sets them
    assert drill.addresses == {"shop": (NAMED, 2525)}  # the name: never to be looked up
    (tmp_path / "run").mkdir()
    drill._preflight()
    report = json.loads((tmp_path / "run" / "preflight.json").read_text())
    assert report["servers"] == []
    assert report["flags"] == [
        {
            "code": "no-address",
            "server": "shop",
            "message": f"shop: resolver {where} gave no address for {NAMED}: no answer "
            "(timeout): not checked",
        }
    ]
    assert NAMED not in asked


def test_check_flags_each_server_left_out(silent, asked, tmp_path, capsys):
    where = f"127.0.0.1:{silent.getsockname()[1]}"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: that server is unreachable, and checked
    path = scenario_file(
        tmp_path,
        where,
        f"{{name: local, host: 127.0.0.1, port: {port}, priority: 1}}",
        f"{{name: shop, host: {NAMED}, port: 2525, priority: 2}}",
    )
    assert main(["check", "--scenario", str(path), "--json", "--timeout", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["servers"]] == ["local"]
    assert [(f["code"], f["server"]) for f in report["flags"]] == [
        ("no-address", "shop"),
        ("unreachable", "local"),
    ]
    assert (
        f"resolver {where} gave no address for {NAMED}: no answer" in report["flags"][0]["message"]
    )
    assert NAMED not in asked


def test_check_with_nothing_left_to_check_says_so_in_one_line(silent, asked, tmp_path, capsys):
    where = f"127.0.0.1:{silent.getsockname()[1]}"
    path = scenario_file(tmp_path, where, f"{{name: shop, host: {NAMED}, port: 2525}}")
    assert main(["check", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"maildrill: check: nothing to check: shop: resolver {where} gave no address for "
        f"{NAMED}: no answer (timeout)\n"
    )
    assert NAMED not in asked


def test_check_names_why_a_name_has_no_address(asked, tmp_path, capsys):
    zones = {"shop.test": {"smtp": {"A": "127.0.0.1"}}}
    with dns_child(zones, tmp_path / "dns", "left-out-token") as (ready, _child):
        where = f"{ready['host']}:{ready['port']}"
        path = scenario_file(tmp_path, where, "{name: gone, host: gone.shop.test, port: 2525}")
        assert main(["check", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"maildrill: check: nothing to check: gone: resolver {where} gave no address for "
        "gone.shop.test: no such name\n"
    )
    assert "gone.shop.test" not in asked


def test_check_says_a_name_of_the_run_zones_is_not_checked_here(asked, tmp_path, capsys):
    """Without `resolver:` the run's DNS server (its zones) runs only in `maildrill run`."""
    path = tmp_path / "zones.yaml"
    path.write_text(
        "name: zones\n"
        f"servers: [{{name: shop, host: {NAMED}, port: 2525}}]\n"
        "dns: {zones: {shop.test: {smtp: {A: 127.0.0.1}}}}\n"
        "campaign: {schedule: [{duration_s: 1, rate: 1}]}\n"
    )
    assert main(["check", "--scenario", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"maildrill: check: nothing to check: shop: {NAMED} is served by the run's dns: "
        "zones, which run only in `maildrill run`\n"
    )
    assert NAMED not in asked
