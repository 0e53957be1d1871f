"""Servers named by DNS, without sockets: the scenario forms (`mx:`, a `host` the zones
serve) and their one-line errors, the answer cache on an injected clock, the MX preference
order, and what routing and retry make of a lookup's failure."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from loadtest.dns_cache import AnswerCache, by_preference
from loadtest.outcomes import Outcome, Phase
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, CircuitState, Failover, Result
from loadtest.scenario import ScenarioError, load_scenario, parse_scenario
from maildrill.dns.resolver import Lookup, Resolver, Status

ZONES: dict[str, Any] = {
    "shop.test": {
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test", "10 mx3.shop.test"],
        "mx1": {"A": "127.0.0.11"},
        "mx2": {"A": "127.0.0.12"},
        "mx3": {"A": "127.0.0.13"},
        "smtp": {"A": "127.0.0.11", "ttl": 2},
    }
}


def scenario(servers: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "servers": servers,
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
        "dns": {"zones": ZONES},
        **extra,
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def a_answer(address: str, ttl: int | None = 2, status: Status = Status.OK) -> Lookup:
    records = (address,) if status is Status.OK else ()
    return Lookup("smtp.shop.test", "A", status, records, ttl if records else None)


# -- the scenario forms ---------------------------------------------------------------


def test_an_mx_entry_is_one_server_per_mx_host_with_its_preference():
    parsed = parse_scenario(scenario([{"mx": "shop.test", "port": 2525, "starttls": False}]))
    made = [(s.name, s.host, s.port, s.priority, s.mx) for s in parsed.servers]
    assert made == [
        ("mx1.shop.test", "mx1.shop.test", 2525, 10, "shop.test"),
        ("mx3.shop.test", "mx3.shop.test", 2525, 10, "shop.test"),
        ("mx2.shop.test", "mx2.shop.test", 2525, 20, "shop.test"),
    ]
    assert all(c.resolve for c in parsed.client_servers().values())
    # Dumped for Locust's workers, it reads back the same (not expanded twice).
    assert parse_scenario(parsed.model_dump()).servers == parsed.servers


def test_a_host_the_zones_serve_is_looked_up_a_fixed_address_is_not():
    parsed = parse_scenario(
        scenario([
            {"name": "primary", "host": "smtp.shop.test", "port": 2525},
            {"name": "secondary", "host": "127.0.0.12", "port": 2525, "priority": 20},
        ])
    )  # fmt: skip
    servers = parsed.client_servers()
    assert servers["primary"].resolve
    assert servers["primary"].host == "smtp.shop.test"
    assert not servers["secondary"].resolve


@pytest.mark.parametrize(
    ("servers", "extra", "expected"),
    [
        (
            [{"name": "p", "host": "nope.shop.test"}],
            {},
            "servers: 'p': host nope.shop.test is not a name the dns: zones serve "
            "(zones: shop.test); to ask another resolver, name it (resolver: HOST[:PORT], "
            "with allow_remote: true)",
        ),
        (
            [{"name": "p", "host": "smtp.other.test"}],
            {},
            "is not a name the dns: zones serve",
        ),
        ([{"mx": "other.test"}], {}, "servers[0]: mx other.test: the dns: zones have no MX"),
        ([{"mx": "shop.test", "priority": 5}], {}, "host and priority come from the MX"),
        ([{"mx": 7}], {}, "servers[0].mx: expected a domain name"),
        (
            [{"name": "p", "host": "smtp.shop.test", "local": True}],
            {},
            "a local sink or Postfix instance listens on an address",
        ),
    ],
)
def test_names_the_run_cannot_look_up_are_refused_in_one_line(servers, extra, expected):
    assert expected in error_of(scenario(servers, **extra))


def test_an_mx_entry_needs_the_zones():
    data = scenario([{"mx": "shop.test"}])
    del data["dns"]
    assert "mx shop.test: the scenario has no dns: zones" in error_of(data)


def test_a_name_outside_the_zones_with_allow_remote_is_as_before():
    """The system's resolver, checked for nothing here: allow_remote said so."""
    parsed = parse_scenario(
        scenario([{"name": "p", "host": "mail.example.com"}], allow_remote=True)
    )
    assert not parsed.client_servers()["p"].resolve


# -- the cache ------------------------------------------------------------------------


def test_an_answer_is_kept_for_its_ttl_then_asked_again():
    clock = Clock()
    cache = AnswerCache(clock)
    kept = cache.put(a_answer("127.0.0.11", ttl=2), at=5000.0)
    assert kept.expires == 102.0
    assert kept.at == 5000.0
    clock.now = 101.999
    assert cache.get("SMTP.shop.test.", "A") is kept  # names compared as DNS does
    assert cache.get("smtp.shop.test", "MX") is None  # another type
    clock.now = 102.0
    assert cache.get("smtp.shop.test", "A") is None  # expired: the next send asks again
    assert cache.answers == {}


@pytest.mark.parametrize(
    "lookup",
    [
        a_answer("", status=Status.TEMPERROR),
        a_answer("", status=Status.NXDOMAIN),
        a_answer("127.0.0.11", ttl=0),
    ],
)
def test_failures_and_ttl_zero_are_not_kept(lookup):
    cache = AnswerCache(Clock())
    assert cache.put(lookup, at=1.0).lookup is lookup
    assert cache.get("smtp.shop.test", "A") is None


def test_a_new_answer_replaces_the_expired_one():
    clock = Clock()
    cache = AnswerCache(clock)
    cache.put(a_answer("127.0.0.11", ttl=1), at=1.0)
    clock.now += 1
    assert cache.get("smtp.shop.test", "A") is None
    cache.put(a_answer("127.0.0.12", ttl=1), at=2.0)
    answer = cache.get("smtp.shop.test", "A")
    assert answer is not None
    assert answer.lookup.records == ("127.0.0.12",)


# -- MX order -------------------------------------------------------------------------


def test_mx_order_is_by_preference_equal_ones_shuffled_by_the_seed():
    names = ["a", "b", "c", "backup"]
    preference = {"a": 10, "b": 10, "c": 10, "backup": 20}
    firsts = Counter()
    for seed in range(300):
        order = by_preference(names, preference, random.Random(seed))
        assert order[-1] == "backup"
        assert sorted(order[:3]) == ["a", "b", "c"]
        assert order == by_preference(names, preference, random.Random(seed))  # repeatable
        firsts[order[0]] += 1
    # Each of the three comes first about a third of the time (300 seeds: 100 +- ~25).
    assert all(60 <= firsts[n] <= 140 for n in "abc"), firsts


def test_ties_outside_the_shuffled_keep_their_order_first():
    order = by_preference(["x", "m1", "y", "m2"], dict.fromkeys(["x", "m1", "y", "m2"], 10),
                          random.Random(1), shuffled={"m1", "m2"})  # fmt: skip
    assert order[:2] == ["x", "y"]
    assert set(order[2:]) == {"m1", "m2"}


def test_each_process_seeds_its_own_mx_order_fixed_servers_stay_in_order():
    parsed = parse_scenario(scenario([{"mx": "shop.test", "port": 2525}]))
    firsts = {parsed.policy(seed=f"1/{share}").preferred("s") for share in range(40)}
    assert firsts == {"mx1.shop.test", "mx3.shop.test"}  # never the backup at 20
    fixed = parse_scenario(
        scenario([{"name": "b", "host": "127.0.0.2"}, {"name": "a", "host": "127.0.0.3"}])
    )
    assert {fixed.policy(seed=f"1/{share}").preferred("s") for share in range(20)} == {"b"}


# -- what routing and retry make of a lookup's failure -----------------------------------

DNS_TEMPORARY = Result(Outcome.DEFERRED, Phase.DNS)  # SERVFAIL, timeout
DNS_NO_HOST = Result(Outcome.REFUSED, Phase.DNS)  # NXDOMAIN, no A record


def test_a_temporary_dns_failure_defers_with_backoff_and_leaves_the_circuit_alone():
    breakers = Breakers(threshold=1)
    policy = Failover(["primary", "secondary"], breakers)
    policy.report("primary", DNS_TEMPORARY, 0.0)
    assert breakers["primary"].state is CircuitState.CLOSED
    again = RetryPolicy(backoff_s=1.0).decide("primary", DNS_TEMPORARY, attempt=1)
    assert again is not None
    assert again.after_s == 1.0
    assert again.avoid is None


def test_no_such_host_fails_this_server_and_routing_moves_on_at_once():
    policy = Failover(["primary", "secondary"], Breakers())
    policy.report("primary", DNS_NO_HOST, 0.0)
    assert policy.states()["primary"] is CircuitState.OPEN
    again = RetryPolicy().decide("primary", DNS_NO_HOST, attempt=1)
    assert again is not None
    assert again.after_s == 0.0
    assert again.avoid == "primary"
    assert policy.choose("s", 0.1) == "secondary"


BAD_DOMAINS = [
    ("shop..test", "is not a domain name"),
    ("a" * 64 + ".test", "is not a domain name"),
    ("", "an empty name is not a domain name"),
    (".", "an empty name is not a domain name"),
    ("shop test", "holds spaces"),
]


@pytest.mark.parametrize(("domain", "expected"), BAD_DOMAINS)
def test_a_malformed_mx_domain_is_refused_in_one_line(domain, expected):
    message = error_of(scenario([{"mx": domain, "port": 25}]))
    assert "servers[0].mx: " in message
    assert expected in message


@pytest.mark.parametrize(("domain", "expected"), BAD_DOMAINS)
def test_a_malformed_mx_domain_is_never_asked_of_the_resolver(tmp_path, domain, expected):
    """Checked before the lookup: the unit tier's socket guard would fail this test if the
    resolver (nothing at 127.0.0.1:9) were asked."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "allow_remote: true\nresolver: 127.0.0.1:9\n"
        f"servers: [{{mx: {domain!r}, port: 25}}]\n"
        "campaign: {schedule: [{duration_s: 2, rate: 1}]}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "servers[0].mx: " in message
    assert expected in message


def test_an_mx_domain_may_end_in_a_dot():
    parsed = parse_scenario(scenario([{"mx": "shop.test.", "port": 25}]))
    assert [s.name for s in parsed.servers] == ["mx1.shop.test", "mx3.shop.test", "mx2.shop.test"]


@pytest.mark.parametrize("name", ["shop..test", "a" * 64 + ".test", "..x"])
def test_a_name_that_is_not_a_dns_name_is_nxdomain_never_asked(name):
    """No socket in the unit tier: the name is refused before any query."""
    lookup = Resolver("127.0.0.1", 9).lookup(name, "MX")
    assert (lookup.status, lookup.records) == (Status.NXDOMAIN, ())
    assert lookup.detail.startswith("not a DNS name (")
