"""Routing policies and circuit breakers: every transition, no sockets."""

from __future__ import annotations

from collections import Counter

import pytest

from loadtest.outcomes import Outcome, Phase
from loadtest.retry import RetryPolicy, is_ambiguous
from loadtest.routing import Breakers, ByStream, CircuitState, Failover, Result, Weighted

OK = Result(Outcome.ACCEPTED, Phase.DOT, 250)
REFUSED = Result(Outcome.REFUSED, Phase.CONNECT)
HANG = Result(Outcome.TIMEOUT, Phase.GREETING)
BUSY = Result(Outcome.DEFERRED, Phase.GREETING, 421)
THROTTLED_MAIL = Result(Outcome.DEFERRED, Phase.MAIL, 450)
GREYLISTED = Result(Outcome.DEFERRED, Phase.RCPT, 450)
REJECTED = Result(Outcome.REJECTED, Phase.RCPT, 550)
DROPPED_AFTER_DOT = Result(Outcome.DROPPED, Phase.DOT)


def failover(threshold=3, cooldown=2.0):
    return Failover(["primary", "secondary"], Breakers(threshold, cooldown))


def test_failover_prefers_primary_while_healthy():
    policy = failover()
    for t in range(5):
        assert policy.choose("promo", t) == "primary"
        policy.report("primary", OK, t)


@pytest.mark.parametrize("result", [REFUSED, HANG])
def test_refused_or_hang_opens_at_once(result):
    policy = failover()
    assert policy.choose("promo", 0.0) == "primary"
    policy.report("primary", result, 0.0)
    assert policy.states()["primary"] is CircuitState.OPEN
    assert policy.choose("promo", 0.1) == "secondary"


@pytest.mark.parametrize("result", [BUSY, THROTTLED_MAIL, DROPPED_AFTER_DOT])
def test_other_server_failures_open_after_k_in_a_row(result):
    policy = failover(threshold=3)
    for i in range(2):
        policy.report("primary", result, i)
        assert policy.states()["primary"] is CircuitState.CLOSED
    policy.report("primary", result, 2)
    assert policy.states()["primary"] is CircuitState.OPEN


def test_success_resets_the_consecutive_count():
    policy = failover(threshold=2)
    policy.report("primary", BUSY, 0)
    policy.report("primary", OK, 1)
    policy.report("primary", BUSY, 2)
    assert policy.states()["primary"] is CircuitState.CLOSED


@pytest.mark.parametrize("result", [GREYLISTED, REJECTED])
def test_message_level_refusals_do_not_open(result):
    policy = failover(threshold=1)
    policy.report("primary", result, 0)
    assert policy.states()["primary"] is CircuitState.CLOSED


def test_half_open_probe_then_failback():
    policy = failover(cooldown=2.0)
    policy.report("primary", REFUSED, 0.0)
    assert policy.choose("promo", 1.9) == "secondary"
    # After the cool-down the primary gets exactly one probe ...
    assert policy.choose("promo", 2.0) == "primary"
    assert policy.states()["primary"] is CircuitState.HALF_OPEN
    assert policy.choose("promo", 2.01) == "secondary"
    # ... and its success closes the circuit: traffic fails back.
    policy.report("primary", OK, 2.05)
    assert policy.states()["primary"] is CircuitState.CLOSED
    assert policy.choose("promo", 2.1) == "primary"


def test_failed_probe_reopens_with_a_new_cooldown():
    policy = failover(cooldown=2.0)
    policy.report("primary", BUSY, 0.0)
    policy.report("primary", BUSY, 0.0)
    policy.report("primary", BUSY, 0.0)
    assert policy.choose("promo", 2.5) == "primary"
    policy.report("primary", BUSY, 2.6)
    assert policy.states()["primary"] is CircuitState.OPEN
    assert policy.choose("promo", 4.5) == "secondary"
    assert policy.choose("promo", 4.7) == "primary"


def test_everything_open_gives_none_and_exclude_is_honoured():
    policy = failover()
    policy.report("primary", REFUSED, 0)
    policy.report("secondary", REFUSED, 0)
    assert policy.choose("promo", 0.5) is None
    fresh = failover()
    assert fresh.choose("promo", 0, exclude=frozenset({"primary"})) == "secondary"


def test_weighted_is_smooth_and_proportional():
    policy = Weighted({"a": 5, "b": 1, "c": 1}, Breakers())
    picks = [policy.choose("promo", 0) for _ in range(7)]
    assert Counter(picks) == {"a": 5, "b": 1, "c": 1}
    # nginx's smooth order: the heavy server's picks are spread, not bunched.
    assert picks == ["a", "a", "b", "a", "c", "a", "a"]


def test_weighted_skips_open_servers_and_probes_after_cooldown():
    breakers = Breakers(1, 1.0)
    policy = Weighted({"a": 1, "b": 1}, breakers)
    policy.report("a", REFUSED, 0.0)
    assert {policy.choose("promo", 0.5) for _ in range(4)} == {"b"}
    assert policy.choose("promo", 1.5) == "a"  # the half-open probe
    policy.report("a", OK, 1.6)
    assert Counter(policy.choose("promo", 2) for _ in range(4)) == {"a": 2, "b": 2}


def test_by_stream_routes_each_stream_and_shares_circuits():
    breakers = Breakers(1, 5.0)
    policy = ByStream(
        {
            "transactional": Failover(["primary", "secondary"], breakers),
            "promotional": Failover(["bulk", "secondary"], breakers),
        },
        breakers,
    )
    assert policy.choose("transactional", 0) == "primary"
    assert policy.choose("promotional", 0) == "bulk"
    assert policy.choose("unknown-stream", 0) == "primary"  # the default: first listed
    policy.report("secondary", REFUSED, 0)
    policy.report("bulk", REFUSED, 0)
    assert policy.choose("promotional", 1) is None
    assert policy.states()["secondary"] is CircuitState.OPEN


def test_retry_policy():
    retry = RetryPolicy(max_attempts=3, backoff_s=1.0, backoff_factor=2.0)
    assert retry.decide("primary", OK, 1) is None
    assert retry.decide("primary", REJECTED, 1) is None
    # Server trouble: the next server at once.
    assert retry.decide("primary", REFUSED, 1) == retry.decide("primary", BUSY, 1)
    assert retry.decide("primary", REFUSED, 1).after_s == 0.0
    assert retry.decide("primary", REFUSED, 1).avoid == "primary"
    # A 4xx for the recipient: back off, start again from the preferred server.
    again = retry.decide("primary", GREYLISTED, 2)
    assert (again.after_s, again.avoid) == (2.0, None)
    assert retry.decide("primary", GREYLISTED, 3) is None  # attempts used up
    # Ambiguous (after the dot): not retried unless the scenario allows it.
    assert is_ambiguous(DROPPED_AFTER_DOT)
    assert retry.decide("primary", DROPPED_AFTER_DOT, 1) is None
    allowed = RetryPolicy(retry_after_dot=True)
    assert allowed.decide("primary", DROPPED_AFTER_DOT, 1).avoid == "primary"
    assert RetryPolicy(defer_to_next=True).decide("primary", GREYLISTED, 1).avoid == "primary"
    assert RetryPolicy(max_backoff_s=3).after(10) == 3
