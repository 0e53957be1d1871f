"""A sink's figures for Prometheus: `GET /metrics` on its control port.

One registry per control app (`registry_for`), never prometheus_client's global one: each
sink's control port is one scrape target, as each node exporter is one, and several sinks
(or several sink sets, in one test process) must not see each other's series. The
collector keeps no count of its own: at every scrape it reads the sink's live status (the
same `status()` `GET /status` answers, or the sum a multi-process sink makes of its
workers'), so what Prometheus sees and what the sink journals cannot drift apart.

Series (every one labelled `sink`):

- `maildrill_sink_listening` (gauge): 1 while its listener accepts connections (0: `down`)
- `maildrill_sink_sessions_total` (counter), `maildrill_sink_sessions_open` (gauge): SMTP
  sessions opened, and open now (for a proxy: client connections)
- `maildrill_sink_receipts_total{outcome}` (counter): messages taken, one per receipts row:
  `accepted` (a backup MX's `queued` included) or `dropped` (journaled, never answered)
- `maildrill_sink_refusals_total{code_class}` (counter): refusals sent, one per refusals
  row: `4xx` or `5xx`
- `maildrill_sink_received_bytes_total` (counter): bytes of the accepted messages
- `maildrill_sink_faults_active{kind}` (gauge): faults in force now (a pending one reads 0;
  steady behaviours are not faults)
- a backup MX's queue, labelled `upstream`: `maildrill_sink_relay_queue_depth` and
  `maildrill_sink_relay_in_flight` (gauges), `maildrill_sink_relay_forwarded_total` and
  `maildrill_sink_relay_bounced_total` (counters: handed on; refused for good by it)

For a proxy (`mode: proxy`) receipts and refusals count the final-dot replies it passed on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# What a collector reads at each scrape: a sink's status as `GET /status` gives it.
StatusSource = Callable[[], Mapping[str, Any]]


class SinkCollector:
    """The series of one sink, read from its live status at scrape time."""

    def __init__(self, status: StatusSource) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield from families(self.status())


def registry_for(status: StatusSource) -> CollectorRegistry:
    """A registry of its own for one sink's control app."""
    registry = CollectorRegistry()
    registry.register(SinkCollector(status))
    return registry


def families(status: Mapping[str, Any]) -> list[Metric]:
    name = str(status["name"])
    counters = status["counters"]

    def gauge(metric: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(metric, doc, labels=["sink"])
        family.add_metric([name], value)
        return family

    def counter(metric: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(metric, doc, labels=["sink"])
        family.add_metric([name], value)
        return family

    receipts = CounterMetricFamily(
        "maildrill_sink_receipts_total",
        "Messages the sink took (one receipts row each), by outcome.",
        labels=["sink", "outcome"],
    )
    receipts.add_metric([name, "accepted"], counters["accepted"])
    receipts.add_metric([name, "dropped"], counters["dropped"])
    refusals = CounterMetricFamily(
        "maildrill_sink_refusals_total",
        "Refusals the sink sent (one refusals row each), by reply code class.",
        labels=["sink", "code_class"],
    )
    refusals.add_metric([name, "4xx"], counters["deferred"])
    refusals.add_metric([name, "5xx"], counters["rejected"])
    return [
        gauge(
            "maildrill_sink_listening",
            "1 while the sink's listener accepts connections.",
            1.0 if status.get("listening") else 0.0,
        ),
        counter("maildrill_sink_sessions_total", "SMTP sessions opened.", counters["sessions"]),
        gauge(
            "maildrill_sink_sessions_open", "SMTP sessions open now.", counters["active_sessions"]
        ),
        receipts,
        refusals,
        counter(
            "maildrill_sink_received_bytes_total",
            "Bytes of the messages the sink accepted.",
            counters["bytes"],
        ),
        _faults(name, status.get("active", [])),
        *_relay(name, status),
    ]


def _faults(name: str, active: list[Mapping[str, Any]]) -> GaugeMetricFamily:
    """Faults (not steady behaviours) by kind: in force now; a pending one reads 0."""
    family = GaugeMetricFamily(
        "maildrill_sink_faults_active",
        "Faults in force on the sink now, by kind (a pending one reads 0).",
        labels=["sink", "kind"],
    )
    faults = [a for a in active if a.get("origin") != "behaviour"]
    in_force = Counter(str(a["kind"]) for a in faults if a.get("state") == "active")
    for kind in sorted({str(a["kind"]) for a in faults}):
        family.add_metric([name, kind], in_force[kind])
    return family


def _relay(name: str, status: Mapping[str, Any]) -> list[Metric]:
    """A backup MX's queue, summed over its worker processes (a multi-process sink's
    combined status keeps each worker's queue under `workers`)."""
    relays = [w["relay"] for w in status.get("workers") or [status] if "relay" in w]
    if not relays:
        return []
    labels = [name, str(relays[0]["upstream"])]

    families: list[Metric] = []
    for make, metric, text, key in _RELAY:
        family = make(metric, text, labels=["sink", "upstream"])
        family.add_metric(labels, sum(int(r[key]) for r in relays))
        families.append(family)
    return families


# The relay's figures: the kind of series, its name, its help, its key in the status.
_RELAY: tuple[tuple[type[GaugeMetricFamily] | type[CounterMetricFamily], str, str, str], ...] = (
    (GaugeMetricFamily, "maildrill_sink_relay_queue_depth",
     "Messages queued for the upstream.", "depth"),
    (GaugeMetricFamily, "maildrill_sink_relay_in_flight",
     "Queued messages being handed on now.", "in_flight"),
    (CounterMetricFamily, "maildrill_sink_relay_forwarded_total",
     "Messages handed on and accepted by the upstream.", "forwarded"),
    (CounterMetricFamily, "maildrill_sink_relay_bounced_total",
     "Messages given up: the upstream refused them for good (5xx).", "bounced"),
)  # fmt: skip
