"""What a `maildrill worker` agrees to run (loadtest.worker_consent): the master's scenario
alone sends no mail off this machine, reads no secret of it, and does not aim at the
worker's own loopback when the master is elsewhere."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.scenario import Scenario, parse_scenario
from loadtest.worker_consent import Consent, plan_problem


def scenario(host: str, **server: Any) -> Scenario:
    return parse_scenario(
        {
            "name": "plan",
            "allow_remote": host != "127.0.0.1",
            "servers": [{"name": "primary", "host": host, "port": 25, **server}],
            "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
        }
    )


NOTHING = Consent(remote=False, secrets=False, master_loopback=True)


def test_loopback_targets_from_a_loopback_master_need_no_consent():
    assert plan_problem(scenario("127.0.0.1"), NOTHING) is None


def test_remote_targets_need_yes_even_with_allow_remote():
    why = plan_problem(scenario("198.18.0.1"), NOTHING)
    assert why == (
        "targets outside loopback (primary 198.18.0.1:25): start the worker with --yes "
        "to send there"
    )
    assert plan_problem(scenario("198.18.0.1"), Consent(True, False, False)) is None


@pytest.mark.parametrize("secret", [{"password_env": "HOME"}, {"password_file": "/etc/hostname"}])
def test_a_password_read_on_the_worker_needs_allow_secrets(secret):
    plan = scenario("127.0.0.1", username="u", **secret)
    why = plan_problem(plan, NOTHING)
    assert why is not None
    assert why.startswith("primary read an AUTH password from this host")
    assert why.endswith("start the worker with --allow-secrets to allow it")
    assert plan_problem(plan, Consent(False, True, True)) is None


def test_loopback_targets_from_a_master_elsewhere_are_refused():
    why = plan_problem(scenario("127.0.0.1"), Consent(True, True, master_loopback=False))
    assert why == (
        "targets on loopback (primary 127.0.0.1:25) from a master on another host: "
        "they would be this worker's own machine"
    )


ZONED = {
    "name": "plan",
    "servers": [{"name": "primary", "host": "smtp.shop.test", "port": 25}],
    "dns": {"zones": {"shop.test": {"smtp": {"A": "127.0.0.1"}}}},
    "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
}


def test_names_of_the_plans_zones_from_a_master_elsewhere_need_yes():
    """From a master on another host the zones, and so the addresses, are its word: a zone
    answering 127.0.0.1 would aim at this worker's own machine, as a literal one would."""
    plan = parse_scenario(ZONED)
    assert plan_problem(plan, NOTHING) is None  # master here, answers held to loopback
    elsewhere = Consent(remote=False, secrets=False, master_loopback=False)
    why = plan_problem(plan, elsewhere)
    assert why == (
        "targets outside loopback (primary smtp.shop.test:25): start the worker with --yes "
        "to send there"
    )
    assert plan_problem(plan, Consent(remote=True, secrets=False, master_loopback=False)) is None


def test_a_loopback_resolver_from_a_master_elsewhere_is_this_workers_own():
    plan = parse_scenario({**ZONED, "dns": None, "allow_remote": True,
                           "resolver": "127.0.0.53"})  # fmt: skip
    yes_elsewhere = Consent(remote=True, secrets=False, master_loopback=False)
    why = plan_problem(plan, yes_elsewhere)
    assert why == (
        "targets on loopback (the resolver 127.0.0.53:53) from a master on another host: "
        "they would be this worker's own machine"
    )
    assert plan_problem(plan, Consent(remote=True, secrets=False, master_loopback=True)) is None
