"""Bounces through the driver, the client and real sinks, without Locust: every attempt
checked against what the campaign plan and the sink's journals say independently."""

from __future__ import annotations

import time
from collections import Counter

from loadtest.campaign import MessageFactory, StreamSpec
from loadtest.client import Sender, Server, Timeouts
from loadtest.driver import Driver
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, Failover
from loadtest.schedule import Dispatcher, Schedule, Stage
from maildrill.mailboxes import local_matches
from maildrill.records import AttemptRecord
from tests.helpers import drive, read_csv

FAST = Timeouts(connect=0.5, greeting=0.5, command=0.5, data=0.5, dot=0.5)


def run(sinks, factory: MessageFactory, messages: int, retry: RetryPolicy) -> list[dict]:
    """The campaign through primary/secondary (a breaker that opens on one server failure)
    by one sender, one message at a time; the journal rows as dicts."""
    rows: list[tuple] = []
    driver = Driver(
        dispatcher=Dispatcher(Schedule([Stage(0.5, messages / 0.5)])),
        factory=factory,
        policy=Failover(["primary", "secondary"], Breakers(threshold=1, cooldown_s=30)),
        retry=retry,
        t0=time.time(),
        emit=rows.append,
    )
    sender = Sender(
        {n: Server(n, "127.0.0.1", sinks.port(n), timeouts=FAST) for n in ("primary", "secondary")}
    )
    drive(driver, sender)
    header = AttemptRecord.header()
    return [dict(zip(header, r, strict=True)) for r in rows]


def test_unknown_mailboxes_bounce_once_are_suppressed_and_never_fail_over(start_sinks):
    sinks = start_sinks(
        {
            "sinks": [
                {"name": "primary", "behaviours": [{"kind": "mailboxes", "preset": "gmail"}]},
                {"name": "secondary"},
            ]
        }
    )
    stream = StreamSpec(
        size_median=2000, size_sigma=0, recipients_max=3, domains={"gmail.test": 1.0},
        unknown_recipients=0.3, unknown_addresses=3,
    )  # fmt: skip
    factory = MessageFactory([stream], "t", seed=4)
    rows = run(sinks, factory, 40, RetryPolicy())

    # What the plan says, message by message in order (one sender: first come, first sent).
    suppressed: set[str] = set()
    expected: dict[str, str] = {}
    delivered: dict[str, int] = {}
    for k in range(40):
        cells = []
        for address in factory.envelope(k)[1]:
            if address in suppressed:
                cells.append("s")
            elif local_matches(address):
                cells.append("550 5.1.1")
            else:
                cells.append("250")
        suppressed |= {a for a in factory.envelope(k)[1] if local_matches(a)}
        expected[f"t-{k}"] = ";".join(cells)
        if "250" in cells:
            delivered[f"t-{k}"] = cells.count("250")
    assert suppressed  # the plan has dead addresses, some of them more than once
    assert any(c.count("s") for c in expected.values())
    assert any(set(c.split(";")) == {"s"} for c in expected.values())

    # One row per message (a 5xx is never retried), every one at the primary.
    assert Counter(r["msg_id"] for r in rows) == Counter(list(expected))
    assert {r["msg_id"]: r["rcpt_replies"] for r in rows} == expected
    assert {r["server"] for r in rows} == {"primary", ""}  # "": not sent (suppressed)
    assert not any(r["failover"] for r in rows)
    for r in rows:
        cells = r["rcpt_replies"].split(";")
        if set(cells) == {"s"}:
            assert (r["outcome"], r["server"], r["final"]) == ("suppressed", "", 1)
        elif "250" in cells:
            assert r["outcome"] == "accepted"
        else:
            assert (r["outcome"], r["phase"], r["code"], r["enhanced"]) == (
                "rejected", "rcpt", 550, "5.1.1")  # fmt: skip
    # The sink refused each dead address once (twice if one message named it twice): its
    # journal, not the client's, says so.
    refusals = read_csv(sinks.journal_dir / "refusals-primary.csv")
    assert len(refusals) == sum(c.split(";").count("550 5.1.1") for c in expected.values())
    assert len(suppressed) <= len(refusals)
    assert {(r["stage"], r["code"], r["enhanced"]) for r in refusals} == {("rcpt", "550", "5.1.1")}
    # Each message went to its known recipients, and only to them.
    receipts = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert {r["msg_id"]: int(r["rcpt_count"]) for r in receipts} == delivered
    assert not (sinks.journal_dir / "receipts-secondary.csv").exists() or not read_csv(
        sinks.journal_dir / "receipts-secondary.csv"
    )


def test_a_retry_carries_only_the_recipients_a_5xx_did_not_end(start_sinks):
    """Greylisting defers the known recipients' first try (450) while the dead one gets
    550: no recipient accepted, so the attempt is deferred; its retry leaves the dead one
    out ("f") and delivers to the rest."""
    sinks = start_sinks(
        {
            "sinks": [
                {
                    "name": "primary",
                    "behaviours": [
                        {"kind": "mailboxes"},
                        {"kind": "greylist", "delay_s": 0.2},
                    ],
                },
                {"name": "secondary"},
            ]
        }
    )
    stream = StreamSpec(
        size_median=2000, size_sigma=0, recipients_min=2, recipients_max=2,
        domains={"example.com": 1.0}, unknown_recipients=0.4, unknown_addresses=50,
    )  # fmt: skip
    factory = MessageFactory([stream], "t", seed=2)
    rows = run(sinks, factory, 12, RetryPolicy(backoff_s=0.3, max_attempts=3))
    by_message: dict[str, list[dict]] = {}
    for r in rows:
        by_message.setdefault(r["msg_id"], []).append(r)
    mixed = 0
    for k in range(12):
        dead = [local_matches(a) for a in factory.envelope(k)[1]]
        tries = sorted(by_message[f"t-{k}"], key=lambda r: r["attempt"])
        first = ";".join("550 5.1.1" if d else "450 4.2.0" for d in dead)
        assert tries[0]["rcpt_replies"] == first
        assert {r["server"] for r in tries} == {"primary"}
        if all(dead):
            assert [(r["outcome"], r["final"]) for r in tries] == [("rejected", 1)]
            continue
        mixed += any(dead)
        assert tries[0]["outcome"] == "deferred"
        assert [r["outcome"] for r in tries] == ["deferred", "accepted"]
        assert tries[1]["rcpt_replies"] == ";".join("f" if d else "250" for d in dead)
    assert mixed  # the case this test is about happened
