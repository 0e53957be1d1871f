"""The senders' Prometheus series: what their `GET /metrics` shows (`maildrill run
--metrics-port PORT`, served by `loadtest.live_glue` in the local runner or the master;
never a worker, whose figures the master holds).

The exposition is read from `loadtest.live_metrics.LiveState` at every scrape by one
collector in a registry of its own (not prometheus_client's global one, which every
module of the process shares and two runs in one test process would both fill). Counters
restart at 0 with each run (a new Locust process), which Prometheus's `rate()` takes as a
counter reset.

Series:

- `maildrill_attempts_total{server,outcome}`: attempts journaled (one attempts.csv row
  each); `server` is empty for a message not sent (`suppressed`)
- `maildrill_attempt_latency_seconds{server}` (histogram): `end - start` of accepted attempts
- `maildrill_attempt_response_time_seconds{server}` (histogram): `end - intended` of
  accepted attempts (the wait a stall, retry or failover caused included; at least 0)
- `maildrill_circuit_state{server,state}` (gauge): how many sender processes see that
  server's circuit in that state (`closed`, `open`, `half_open`)
- `maildrill_messages_planned` (gauge), `maildrill_messages_finished_total` (counter):
  the campaign's messages, and those whose last attempt was journaled
- `maildrill_load_ended` (gauge): 1 once the load stopped: every figure is final
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from loadtest.live_metrics import Histogram, LiveState
from loadtest.outcomes import Outcome


class SenderCollector:
    """The series of the run as the senders see it, read from `live` at scrape time."""

    def __init__(self, live: LiveState) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        live = self.live
        attempts = CounterMetricFamily(
            "maildrill_attempts_total",
            "SMTP attempts journaled, by server and outcome.",
            labels=["server", "outcome"],
        )
        seen = dict.fromkeys((s, o.value) for s in live.servers for o in Outcome)
        for key in seen | dict.fromkeys(sorted(live.attempts)):
            attempts.add_metric(list(key), live.attempts[key])
        yield attempts
        yield _histogram(
            "maildrill_attempt_latency_seconds",
            "Service time (end - start) of accepted attempts.",
            live.servers,
            live.latency,
        )
        yield _histogram(
            "maildrill_attempt_response_time_seconds",
            "end - intended of accepted attempts (waits from stalls, retries, failovers).",
            live.servers,
            live.response,
        )
        circuits = GaugeMetricFamily(
            "maildrill_circuit_state",
            "Sender processes that see the server's circuit in this state.",
            labels=["server", "state"],
        )
        for (server, state), count in live.circuit_counts().items():
            circuits.add_metric([server, state], count)
        yield circuits
        yield GaugeMetricFamily(
            "maildrill_messages_planned", "Messages the campaign plans.", value=live.planned
        )
        yield CounterMetricFamily(
            "maildrill_messages_finished",
            "Messages whose last attempt was journaled (delivered or given up).",
            value=live.finished,
        )
        yield GaugeMetricFamily(
            "maildrill_load_ended",
            "1 once the load stopped: every figure is final.",
            value=1.0 if live.ended else 0.0,
        )


def _histogram(
    name: str, doc: str, servers: list[str], by_server: dict[str, Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["server"])
    for server in [*servers, *sorted(set(by_server) - set(servers))]:
        histogram = by_server.get(server) or Histogram()
        buckets = [(_le(bound), float(count)) for bound, count in histogram.cumulative()]
        family.add_metric([server], buckets, histogram.total)
    return family


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it (`0.25`, `1.0`, `+Inf`)."""
    return "+Inf" if math.isinf(bound) else repr(bound)


def registry_for(live: LiveState) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SenderCollector(live))
    return registry
