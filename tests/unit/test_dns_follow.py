"""dns_follow on hand-built journals, every figure worked out by hand: a records fault
moves smtp.shop.test from .11 to .12 at 10 s and back at 20 s; two senders (Locust
processes) each follow on their own; a SERVFAIL window defers three attempts of two
messages."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from loadtest.analysis import dns_follow, tally
from loadtest.analysis.summary_model import SLO_METRICS, Dns, Summary
from tests.runs import T0

OLD, NEW, NAME = "127.0.0.11", "127.0.0.12", "smtp.shop.test"
RECORDS = json.dumps({"duration": 10.0, "records": {NAME: {"A": NEW, "ttl": 5}}})


def faults(*rows: tuple[float, str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"time": T0 + t, "sink": "dns", "worker": 0, "kind": kind, "state": state,
             "fault_id": fid, "origin": "schedule", "params": params}
            for t, kind, state, fid, params in rows
        ]
    )  # fmt: skip


def attempts(*rows: tuple[str, float, str, str, str, str]) -> pd.DataFrame:
    """(worker, start, addr, msg_id, outcome, phase), all looked up at smtp.shop.test."""
    return pd.DataFrame(
        [
            {"worker": w, "start": T0 + s, "addr": addr, "dns_name": NAME if addr else "",
             "msg_id": msg, "outcome": outcome, "phase": phase}
            for w, s, addr, msg, outcome, phase in rows
        ]
    )  # fmt: skip


SWITCH = faults(
    (10.0, "records", "start", "r1", RECORDS),
    (20.0, "records", "stop", "r1", "{}"),
    (30.0, "servfail", "start", "s1", "{}"),
    (35.0, "servfail", "stop", "s1", "{}"),
)


def sent(worker: str, start: float, addr: str, msg: str = "m") -> tuple[str, ...]:
    return (worker, start, addr, msg, "accepted", "dot")  # type: ignore[return-value]


SENT = attempts(
    sent("w1", 5.0, OLD),  # before the change: not counted
    sent("w1", 10.5, OLD), sent("w1", 12.0, NEW), sent("w1", 14.0, NEW),
    sent("w2", 11.0, OLD), sent("w2", 13.0, OLD), sent("w2", 15.5, NEW), sent("w2", 16.0, NEW),
    # the switch back at 20 s: w2 goes back at once, then one more at the fault's address
    sent("w1", 21.0, NEW), sent("w1", 22.0, OLD),
    sent("w2", 20.5, OLD), sent("w2", 23.0, NEW), sent("w2", 24.0, OLD),
    ("w1", 31.0, "", "d1", "deferred", "dns"), ("w1", 32.0, "", "d1", "deferred", "dns"),
    ("w2", 33.0, "", "d2", "deferred", "dns"),
    ("w2", 40.0, "", "d3", "deferred", "dns"),  # after the window: the run's count only
)  # fmt: skip


def test_each_sender_follows_a_change_and_its_switch_back_on_its_own():
    dns = dns_follow.summarise(SWITCH, SENT, T0)
    change, back = dns.changes
    assert (change.edge, change.at_s, change.names, change.addresses) == (
        "change", 10.0, [NAME], [NEW],
    )  # fmt: skip
    # w1 at 12 s (2 s), w2 at 15.5 s (5.5 s); stale: 10.5, 11, 13 (the last 3 s after)
    assert (change.senders, change.first_follow_s, change.last_follow_s) == (2, 2.0, 5.5)
    assert (change.stale_attempts, change.last_stale_s, change.not_followed) == (3, 3.0, 0)
    assert (back.edge, back.at_s, back.addresses) == ("switch_back", 20.0, [OLD])
    # w1 at 22 (2 s); w2 first at 20.5 but at the fault's address again at 23: for good at 24
    assert (back.first_follow_s, back.last_follow_s) == (0.5, 4.0)
    assert (back.stale_attempts, back.last_stale_s) == (2, 3.0)
    assert (dns.follow_s, dns.stale_attempts) == (5.5, 5)


def test_dns_failures_deferred_in_each_window_and_in_the_run():
    dns = dns_follow.summarise(SWITCH, SENT, T0)
    records, servfail = dns.faults
    assert (records.kind, records.deferred_messages, records.deferred_attempts) == (
        "records", 0, 0,
    )  # fmt: skip
    assert (servfail.onset_s, servfail.cleared_s) == (30.0, 35.0)
    assert (servfail.deferred_messages, servfail.deferred_attempts) == (2, 3)
    assert dns.deferred == 3  # d1, d2 and d3


def test_a_sender_that_never_followed_leaves_the_follow_time_unmeasured():
    stuck = attempts(sent("w1", 11.0, NEW), sent("w2", 11.0, OLD), sent("w2", 19.0, OLD))
    dns = dns_follow.summarise(SWITCH, stuck, T0)
    change = dns.changes[0]
    assert (change.senders, change.not_followed, change.last_follow_s) == (2, 1, None)
    assert (change.first_follow_s, change.stale_attempts) == (1.0, 2)
    assert dns.follow_s is None


def test_records_without_an_address_and_other_names_are_no_change():
    mx_only = json.dumps({"records": {"shop.test": {"MX": "20 mx2.shop.test", "ttl": 5}}})
    other = attempts(sent("w1", 11.0, OLD)).assign(dns_name="mx1.shop.test")
    dns = dns_follow.summarise(
        faults((10.0, "records", "start", "r1", mx_only), (20.0, "records", "stop", "r1", "{}")),
        other,
        T0,
    )
    assert (dns.changes, dns.follow_s, dns.stale_attempts) == ([], None, 0)
    assert len(dns.faults) == 1


def test_the_slo_metrics_read_the_dns_part():
    summary = Summary.model_construct(dns=Dns(follow_s=5.5, stale_attempts=5, deferred=3))
    assert SLO_METRICS["dns_follow_s"].value(summary) == 5.5
    assert SLO_METRICS["dns_stale_attempts"].value(summary) == 5
    assert SLO_METRICS["dns_deferred"].value(summary) == 3
    assert SLO_METRICS["dns_follow_s"].value(Summary.model_construct(dns=None)) is None


@pytest.mark.parametrize("dealt", ["interleaved", "deferred_apart"])
def test_shares_of_the_attempts_kept_and_joined_give_the_run_figures(dealt):
    """A run read a partition at a time keeps each share's `rows` (text as categories,
    each share's own, as the journals are read) and joins them: the same `dns` part. A
    row that was not deferred keeps no message id."""
    compact = SENT.astype({c: "category" for c in ("worker", "addr", "dns_name", "msg_id",
                                                    "outcome", "phase")})  # fmt: skip
    shares = [
        share.assign(**{c: share[c].cat.remove_unused_categories() for c in share if c != "start"})
        for share in (
            [compact.iloc[s::3] for s in range(3)]
            if dealt == "interleaved"  # every share has a deferred attempt
            else [compact.iloc[:13], compact.iloc[13:]]  # the first has none
        )
    ]
    assert set(shares[0]["msg_id"].cat.categories) != set(shares[1]["msg_id"].cat.categories)
    kept = [dns_follow.rows(SWITCH, share) for share in shares]
    joined = tally.joined(kept)
    assert dns_follow.summarise(SWITCH, joined, T0) == dns_follow.summarise(SWITCH, SENT, T0)
    assert isinstance(joined["addr"].dtype, pd.CategoricalDtype)
    assert set(joined["msg_id"].dropna()) == {"d1", "d2", "d3"}
