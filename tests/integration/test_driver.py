"""The campaign driver (routing + retries + client) against real sinks, without Locust."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from loadtest.campaign import MessageFactory, StreamSpec
from loadtest.client import Sender, Server, Timeouts
from loadtest.driver import Driver
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, Failover
from loadtest.schedule import Dispatcher, Schedule, Stage
from maildrill.records import AttemptRecord
from tests.helpers import drive, read_csv

FAST = Timeouts(connect=0.5, greeting=0.3, command=0.5, data=0.5, dot=0.3)


def run_campaign(sinks, messages: int, retry: RetryPolicy, fault: dict | None = None):
    """Send `messages` as fast as due through primary/secondary; return the journal rows."""
    rows: list[tuple] = []
    driver = Driver(
        dispatcher=Dispatcher(Schedule([Stage(1.0, messages)])),
        factory=MessageFactory([StreamSpec(size_median=2000, size_sigma=0)], "t", seed=1),
        policy=Failover(["primary", "secondary"], Breakers(threshold=2, cooldown_s=30)),
        retry=retry,
        t0=time.time(),
        emit=rows.append,
    )
    sender = Sender(
        {n: Server(n, "127.0.0.1", sinks.port(n), timeouts=FAST) for n in ("primary", "secondary")}
    )
    if fault:
        sinks.control("primary", "POST", "/faults", fault)
    drive(driver, sender)
    fields = ("msg_id", "attempt", "server", "outcome", "phase", "final", "maybe_duplicate")
    index = [AttemptRecord.header().index(f) for f in fields]
    return [dict(zip(fields, (row[i] for i in index), strict=True)) for row in rows]


@pytest.fixture
def sinks(start_sinks):
    return start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]})


def received(sinks, name):
    return [r["msg_id"] for r in read_csv(sinks.journal_dir / f"receipts-{name}.csv")]


@pytest.mark.parametrize(
    ("fault", "first_failure"),
    [
        ({"kind": "down"}, ("refused", "connect")),
        ({"kind": "hang"}, ("timeout", "greeting")),
        ({"kind": "busy"}, ("deferred", "greeting")),
        ({"kind": "throttle", "rate": 0.001, "burst": 1, "preset": "gmail"}, ("deferred", "mail")),
    ],
    ids=["down", "hang", "busy", "throttle"],
)
def test_every_message_fails_over_to_the_secondary(sinks, fault, first_failure):
    rows = run_campaign(sinks, 20, RetryPolicy(max_attempts=3), fault)
    final = {r["msg_id"]: r for r in rows if r["final"]}
    assert len(final) == 20
    assert all(r["outcome"] == "accepted" for r in final.values())
    failures = [(r["outcome"], r["phase"]) for r in rows if r["outcome"] != "accepted"]
    assert failures
    assert set(failures) == {first_failure}
    # One receipt per message, on the server that accepted it.
    on = {r["msg_id"]: r["server"] for r in final.values()}
    assert sorted(received(sinks, "primary") + received(sinks, "secondary")) == sorted(on)
    assert Counter(on.values())["secondary"] >= 20 - 1


def test_drop_after_dot_is_not_retried_by_default(sinks):
    rows = run_campaign(sinks, 5, RetryPolicy(), {"kind": "drop"})
    dropped = [r for r in rows if r["outcome"] == "dropped"]
    assert dropped
    assert all(r["phase"] == "dot" and r["maybe_duplicate"] and r["final"] for r in dropped)
    # The sink has every dropped message: the client counts them failed (phantoms).
    assert set(received(sinks, "primary")) >= {r["msg_id"] for r in dropped}


def test_drop_after_dot_retried_when_allowed_makes_duplicates(sinks):
    rows = run_campaign(sinks, 5, RetryPolicy(retry_after_dot=True), {"kind": "drop"})
    final = {r["msg_id"]: r for r in rows if r["final"]}
    assert all(r["outcome"] == "accepted" for r in final.values())
    both = set(received(sinks, "primary")) & set(received(sinks, "secondary"))
    dropped = {r["msg_id"] for r in rows if r["outcome"] == "dropped"}
    assert both == dropped
    assert both


def test_greylisting_is_retried_on_the_same_server_after_backoff(start_sinks):
    sinks = start_sinks(
        {
            "sinks": [
                {"name": "primary", "behaviours": [{"kind": "greylist", "delay_s": 0.2}]},
                {"name": "secondary"},
            ]
        }
    )
    rows = run_campaign(sinks, 3, RetryPolicy(backoff_s=0.3, max_attempts=3))
    assert Counter((r["outcome"], r["phase"]) for r in rows) == {
        ("deferred", "rcpt"): 3,
        ("accepted", "dot"): 3,
    }
    assert {r["server"] for r in rows} == {"primary"}
    assert received(sinks, "secondary") == []
