"""DNS faults in the authority's answers, without sockets: which fault wins when several
are in force, a `records` set followed through a CNAME, a fault's window and probability
read at each query, names outside the zones untouched, and the query journal's rows."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.message
import dns.rcode

from maildrill.dns.board import FaultBoard
from maildrill.dns.query_log import QueryLog
from maildrill.dns.server import Authority, Outcome
from maildrill.dns.zone import parse_zones
from maildrill.journal import CsvJournal
from maildrill.records import DnsQueryRecord
from tests.helpers import read_csv

ZONES = {
    "shop.test": {
        "ttl": 60,
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "mx1": {"A": "127.0.0.11"},
        "mx2": {"A": "127.0.0.12"},
        "www": {"CNAME": "mx1.shop.test"},
    }
}


def authority(board: FaultBoard) -> Authority:
    return Authority([z.to_dns() for z in parse_zones(ZONES)], board)


def ask(auth: Authority, name: str, rtype: str = "A") -> tuple[Outcome, dns.message.Message]:
    outcome = auth.reply(dns.message.make_query(name, rtype).to_wire(), max_size=None)
    assert outcome.wire is not None or outcome.silent
    return outcome, dns.message.from_wire(outcome.wire) if outcome.wire else dns.message.Message()


def records(message: dns.message.Message) -> list[str]:
    return [f"{r.name} {r.ttl} {rd}" for r in message.answer for rd in r]


def on_a_loop(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # the board arms its timers on the running loop


def test_an_answer_fault_wins_over_records_and_latency_adds_to_it() -> None:
    async def test() -> None:
        board = FaultBoard(None)
        auth = authority(board)
        board.add("records", {"records": {"mx1.shop.test": {"A": "127.0.0.12", "ttl": 5}}})
        _, switched = ask(auth, "www.shop.test")  # through the CNAME to the new set
        assert records(switched) == [
            "www.shop.test. 60 mx1.shop.test.",
            "mx1.shop.test. 5 127.0.0.12",
        ]
        board.add("latency", {"ms": 300})
        board.add("servfail", {"names": ["mx1.shop.test"]})
        outcome, failed = ask(auth, "mx1.shop.test")
        assert failed.rcode() == dns.rcode.SERVFAIL
        assert outcome.delay == 0.3
        assert outcome.acted == ["dns-latency-2", "dns-servfail-3"]
        outcome, other = ask(auth, "mx2.shop.test")  # out of servfail's scope: late only
        assert (other.rcode(), records(other)) == (0, ["mx2.shop.test. 60 127.0.0.12"])
        assert outcome.acted == ["dns-latency-2"]

    on_a_loop(test)


def test_the_records_fault_started_last_wins_a_set_two_replace() -> None:
    async def test() -> None:
        board = FaultBoard(None)
        auth = authority(board)
        now = time.time()
        board.add("records", {"records": {"shop.test": {"MX": "20 mx2.shop.test", "ttl": 5}}})
        board.add(
            "records",
            {"records": {"shop.test": {"MX": [], "ttl": 5}}},
            start_at=now - 0.5,  # opened before the other, which wins: it opened last
            duration=60,
        )
        _, answer = ask(auth, "shop.test", "MX")
        assert records(answer) == ["shop.test. 5 20 mx2.shop.test."]

    on_a_loop(test)


def test_a_window_is_read_at_each_query_and_names_outside_stay_refused() -> None:
    async def test() -> None:
        board = FaultBoard(None)
        auth = authority(board)
        pending = board.add("nxdomain", {}, start_at=time.time() + 30, duration=5)
        assert ask(auth, "mx1.shop.test")[1].rcode() == dns.rcode.NOERROR
        board.remove(pending.id)
        cancelled = board.fault(pending.id)
        assert cancelled is not None
        assert cancelled.state == "cancelled"
        board.add("nxdomain", {})
        assert ask(auth, "mx1.shop.test")[1].rcode() == dns.rcode.NXDOMAIN
        assert ask(auth, "gmail.com")[1].rcode() == dns.rcode.REFUSED

    on_a_loop(test)


def test_probability_draws_per_query_from_the_boards_rng() -> None:
    async def test() -> None:
        board = FaultBoard(None, random.Random(7))
        auth = authority(board)
        board.add("servfail", {}, probability=0.3)
        seen = [ask(auth, "mx1.shop.test")[1].rcode() for _ in range(200)]
        draws = random.Random(7)
        expected = sum(draws.random() < 0.3 for _ in range(200))
        assert seen.count(dns.rcode.SERVFAIL) == expected
        assert 30 < expected < 90  # the draw, not every query or none

    on_a_loop(test)


def test_the_query_journal_has_each_answer_and_its_ttl(tmp_path: Path) -> None:
    async def test() -> None:
        journal = CsvJournal(tmp_path / "dns-queries.csv", DnsQueryRecord)
        board = FaultBoard(None)
        auth = authority(board)
        auth.log = QueryLog(journal)
        ask(auth, "shop.test", "MX")
        timeout = board.add("timeout", {"names": ["mx2.shop.test"]})
        nxdomain = board.add("nxdomain", {"names": ["mx1.shop.test"]})
        ask(auth, "mx2.shop.test")
        ask(auth, "mx1.shop.test")
        journal.close()
        rows = read_csv(tmp_path / "dns-queries.csv")
        assert [(r["name"], r["type"], r["rcode"], r["answers"], r["ttl"]) for r in rows] == [
            ("shop.test", "MX", "NOERROR", "10 mx1.shop.test.;20 mx2.shop.test.", "60"),
            ("mx2.shop.test", "A", "none", "", ""),
            ("mx1.shop.test", "A", "NXDOMAIN", "", "60"),  # the SOA's negative TTL
        ]
        assert [r["fault_id"] for r in rows] == ["", timeout.id, nxdomain.id]

    on_a_loop(test)


def test_the_query_journal_is_bounded(tmp_path: Path) -> None:
    journal = CsvJournal(tmp_path / "q.csv", DnsQueryRecord)
    auth = Authority([z.to_dns() for z in parse_zones(ZONES)], None, QueryLog(journal, 3))
    for _ in range(6):
        ask(auth, "mx1.shop.test")
    journal.close()
    assert [r["rcode"] for r in read_csv(tmp_path / "q.csv")] == [
        "NOERROR",
        "NOERROR",
        "NOERROR",
        "journal-full",
    ]
