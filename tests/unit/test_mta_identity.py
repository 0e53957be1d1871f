"""Each Postfix instance maildrill builds delivers from its own loopback address with its
own EHLO name (smtp_bind_address, smtp_helo_name): defaults distinct per instance, the
scenario's own values checked (IPv4, loopback unless allow_remote, not shared), and both
parameters maildrill's, never a scenario's `settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest.cli import main
from loadtest.mta_identity import Identity, identities
from loadtest.postfix import PostfixError
from loadtest.scenario import parse_scenario
from tests.helpers import scenario_refused
from tests.unit.test_postfix_config import effective, instance


def pair(primary: dict[str, Any] | None = None, secondary: dict[str, Any] | None = None,
         allow_remote: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "allow_remote": allow_remote,
        "servers": [
            {"name": "primary", "postfix": {"relay": "sink", **(primary or {})}},
            {"name": "sink", "local": True},
            {"name": "secondary", "postfix": {"relay": "sink", **(secondary or {})}},
        ],
        "routing": {"servers": ["primary", "secondary"]},
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }


def test_defaults_are_distinct_per_instance_in_scenario_order():
    got = identities(parse_scenario(pair()).servers)
    assert got == {
        "primary": Identity("primary.maildrill.test", "127.0.0.11", "primary.maildrill.test"),
        "secondary": Identity("secondary.maildrill.test", "127.0.0.12", "secondary.maildrill.test"),
    }


def test_the_helo_name_follows_the_hostname_unless_given():
    data = pair({"hostname": "mx1.shop.test"}, {"hostname": "h.test", "helo_name": "mx2.shop.test"})
    got = identities(parse_scenario(data).servers)
    assert (got["primary"].hostname, got["primary"].helo_name) == ("mx1.shop.test",) * 2
    assert (got["secondary"].hostname, got["secondary"].helo_name) == ("h.test", "mx2.shop.test")


def test_a_given_address_is_skipped_by_the_defaults():
    got = identities(parse_scenario(pair(secondary={"source_address": "127.0.0.11"})).servers)
    assert got["primary"].source_address == "127.0.0.12"
    assert got["secondary"].source_address == "127.0.0.11"


@pytest.mark.parametrize("address", ["192.0.2.10", "10.0.0.1"])
def test_an_address_off_loopback_needs_allow_remote(address):
    scenario_refused(
        pair({"source_address": address}), "primary", "postfix.source_address", address,
        "outside loopback", "allow_remote",
    )  # fmt: skip
    allowed = parse_scenario(pair({"source_address": address}, allow_remote=True))
    assert identities(allowed.servers)["primary"].source_address == address


@pytest.mark.parametrize("address", ["::1", "banana", "127.0.0.256", "127.0.0.11\nx"])
def test_a_source_address_is_an_ipv4_address(address):
    scenario_refused(pair({"source_address": address}), "source_address", "IPv4")


def test_two_instances_may_not_share_an_address():
    data = pair({"source_address": "127.0.0.20"}, {"source_address": "127.0.0.20"})
    scenario_refused(data, "'secondary'", "127.0.0.20", "'primary'")


@pytest.mark.parametrize("name", ["smtp_bind_address", "smtp_helo_name"])
def test_the_identity_parameters_are_maildrills_even_with_allow_remote(name):
    scenario_refused(pair({"settings": {name: "127.0.0.1"}}, allow_remote=True), name,
                     "postfix.source_address, postfix.helo_name")  # fmt: skip


def test_helo_name_is_a_host_name():
    scenario_refused(pair({"helo_name": "mx.test\nrelayhost = [x]"}), "helo_name")


def test_validate_refuses_an_address_off_loopback_in_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "remote-source.yaml"
    path.write_text(yaml.safe_dump(pair({"source_address": "192.0.2.10"})))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "postfix.source_address 192.0.2.10 is outside loopback" in err


def test_main_cf_binds_to_the_source_address_and_gives_the_helo_name(tmp_path: Path):
    values = effective(
        instance(tmp_path, source_address="127.0.0.11", helo_name="mx1.shop.test").render()[
            "main.cf"
        ]
    )
    assert values["smtp_bind_address"] == "127.0.0.11"
    assert values["smtp_helo_name"] == "mx1.shop.test"
    plain = effective(instance(tmp_path).render()["main.cf"])
    assert (plain["smtp_bind_address"], plain["smtp_helo_name"]) == ("", "mta.maildrill.test")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source_address": "192.0.2.10"},
        {"source_address": "::1"},
        {"source_address": "127.0.0.1\ninet_interfaces = all"},
        {"helo_name": "mx.test\ninet_interfaces = all"},
    ],
)
def test_render_holds_an_instance_built_without_a_scenario_to_the_same_rules(tmp_path, kwargs):
    with pytest.raises(PostfixError):
        instance(tmp_path, **kwargs).render()
    if kwargs.get("source_address") == "192.0.2.10":
        values = effective(instance(tmp_path, allow_remote=True, **kwargs).render()["main.cf"])
        assert values["smtp_bind_address"] == "192.0.2.10"
