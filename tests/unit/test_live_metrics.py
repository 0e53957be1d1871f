"""loadtest.live_metrics (the run as the senders see it) and what the senders' /metrics
makes of it (loadtest.sender_metrics), on rows built here with known answers."""

from __future__ import annotations

import dataclasses

from prometheus_client import generate_latest

from loadtest.live_metrics import BUCKETS_S, Histogram, LiveState
from loadtest.sender_metrics import registry_for
from maildrill.records import AttemptRecord
from tests.helpers import Scrape

BASE = AttemptRecord(
    run_id="run", worker="local", msg_id="run-1", stream="promotional", attempt=1,
    server="primary", intended=100.0, due=100.0, start=100.5, connected=100.5, end=100.75,
    phase="dot", code=250, enhanced="2.0.0", outcome="accepted", bytes=5000, recipients=1,
    recipients_refused=0, new_connection=True, retry=False, failover=False, final=True,
    maybe_duplicate=False, error="",
)  # fmt: skip


def row(**changes: object) -> tuple[object, ...]:
    return dataclasses.replace(BASE, **changes).row()


def test_a_bucket_holds_values_up_to_and_including_its_bound():
    histogram = Histogram()
    for value in (0.0, 0.25, 0.2500001, 61.0):
        histogram.observe(value)
    cumulative = dict(histogram.cumulative())
    assert cumulative[0.25] == 2  # le is inclusive, as Prometheus reads it
    assert cumulative[0.5] == 3
    assert cumulative[BUCKETS_S[-1]] == 3
    assert cumulative[float("inf")] == histogram.count == 4
    assert histogram.total == 0.0 + 0.25 + 0.2500001 + 61.0


def test_rows_count_by_server_and_outcome_and_time_only_accepted_attempts():
    live = LiveState()
    live.reset(["primary", "secondary"], planned=3)
    live.add_rows(
        [
            row(outcome="refused", phase="connect", code=None, final=False),
            row(server="secondary", attempt=2, outcome="accepted", end=101.0),
            row(msg_id="run-2", outcome="rejected", code=550),
        ]
    )
    assert live.attempts == {
        ("primary", "refused"): 1,
        ("secondary", "accepted"): 1,
        ("primary", "rejected"): 1,
    }
    assert live.finished == 2  # the refused attempt was not its message's last
    assert live.last_code == {"primary": 550, "secondary": 250}
    assert set(live.latency) == {"secondary"}
    assert live.latency["secondary"].total == 0.5  # end - start
    assert live.response["secondary"].total == 1.0  # end - intended
    page = Scrape(generate_latest(registry_for(live)).decode())
    assert page.value("maildrill_attempts_total", server="primary", outcome="refused") == 1
    assert page.value("maildrill_attempts_total", server="secondary", outcome="timeout") == 0
    assert page.value("maildrill_attempt_latency_seconds_count", server="secondary") == 1
    assert page.value("maildrill_attempt_latency_seconds_bucket", server="secondary", le="0.5") == 1
    assert (
        page.value("maildrill_attempt_latency_seconds_bucket", server="secondary", le="0.25") == 0
    )
    assert page.value("maildrill_attempt_latency_seconds_count", server="primary") == 0
    assert page.value("maildrill_messages_finished_total") == 2
    assert page.value("maildrill_messages_planned") == 3
    assert page.value("maildrill_load_ended") == 0


def test_circuits_count_the_sender_processes_that_see_each_state():
    live = LiveState()
    live.reset(["primary", "secondary"], planned=0)
    live.circuits["w1"] = {"primary": "open", "secondary": "closed"}
    live.circuits["w2"] = {"primary": "half_open", "secondary": "closed"}
    counts = live.circuit_counts()
    assert counts[("primary", "open")] == 1
    assert counts[("primary", "half_open")] == 1
    assert counts[("primary", "closed")] == 0  # present, at 0
    assert counts[("secondary", "closed")] == 2
    page = Scrape(generate_latest(registry_for(live)).decode())
    assert page.by("maildrill_circuit_state", "server", "state")[("primary", "open")] == 1
    live.read_local = lambda: {"primary": "closed"}  # the local runner's, read when asked
    assert live.circuit_counts()[("primary", "closed")] == 1
