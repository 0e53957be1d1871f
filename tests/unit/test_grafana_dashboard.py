"""docs/grafana-dashboard.json: importable as exported (its datasource an input), and every
metric its PromQL queries is one the two /metrics endpoints expose, read from real
registries here (a real Sink's and backup MX's status; a LiveState fed a real attempt row),
not from a list kept beside the dashboard."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from loadtest.live_metrics import LiveState
from loadtest.sender_metrics import registry_for as sender_registry
from maildrill.records import AttemptRecord
from sinks.backup_mx import RelayQueue
from sinks.config import effect_request, parse_config
from sinks.metrics import registry_for as sink_registry
from sinks.sink import Sink
from tests.helpers import REPO, Scrape

DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# PromQL words that are not metric names where an identifier stands without a "(" after it.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression selects: its identifiers once strings, label
    matchers, ranges and grouping label lists are taken out, less functions (followed by
    "(") and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {
        m[1]
        for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", expr)
        if not m[2] and m[1] not in _KEYWORDS
    }


def test_metric_names_reads_promql():
    expr = (
        'histogram_quantile(0.95, sum by (server, le) (rate(a_bucket{x="b c"}[$__rate_interval])))'
        " - on (server) b_total > bool 0"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


def exposed(tmp_path: Path) -> set[str]:
    """Every sample name the sinks' and the senders' /metrics expose, from real parts."""
    return set().union(*(page.names() for page in pages(tmp_path)))


def pages(tmp_path: Path) -> list[Scrape]:
    """The /metrics pages of a sink, a backup MX and the senders, from real parts."""
    config = parse_config(
        {
            "sinks": [
                {"name": "primary"},
                {"name": "backup", "mode": "backup-mx", "upstream": {"port": 2525}},
            ]
        }
    )
    primary, backup = (Sink(c, tmp_path) for c in config.sinks)
    backup.relay = RelayQueue(backup.config, tmp_path, 0)  # as start() makes it
    spec, _ = effect_request({"kind": "reject", "stage": "mail", "code": 550}, primary.kinds)
    asyncio.run(primary.add_effect(spec, "command"))  # a fault in force
    live = LiveState()
    live.reset(["primary", "backup"], planned=1)
    live.add(
        AttemptRecord(
            run_id="run", worker="local", msg_id="run-1", stream="promotional", attempt=1,
            server="primary", intended=1.0, due=1.0, start=1.0, connected=1.0, end=1.001,
            phase="dot", code=250, enhanced="2.0.0", outcome="accepted", bytes=5000,
            recipients=1, recipients_refused=0, new_connection=True, retry=False,
            failover=False, final=True, maybe_duplicate=False, error="",
        ).row()
    )  # fmt: skip
    try:
        registries = [sink_registry(primary.status), sink_registry(backup.status)]
        registries.append(sender_registry(live))
        return [Scrape(generate_latest(r).decode()) for r in registries]
    finally:
        asyncio.run(backup.relay.stop())
        for sink in (primary, backup):
            sink.journals.close()


def test_every_metric_the_dashboard_queries_is_exposed(tmp_path):
    queried = set().union(*(metric_names(e) for e in expressions(dashboard())))
    names = exposed(tmp_path)
    assert queried, "the dashboard queries something"
    assert queried <= names, f"not exposed: {sorted(queried - names)}"
    # The panels the issue asks for: throughput, latency, circuits, backlog, faults.
    for needed in (
        "maildrill_attempts_total",
        "maildrill_attempt_latency_seconds_bucket",
        "maildrill_circuit_state",
        "maildrill_sink_relay_queue_depth",
        "maildrill_messages_planned",
        "maildrill_messages_finished_total",
        "maildrill_sink_faults_active",
    ):
        assert needed in queried


def test_the_readme_lists_every_metric_exposed(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Metrics (Prometheus and Grafana)")[1].split("\n## ")[0]
    listed = set(re.findall(r"`(maildrill_[a-z_]+)[`{]", section))
    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for page in pages(tmp_path)
        for f in page.families
    }
    assert listed == families


def test_the_dashboard_imports_as_exported():
    board = dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["id"] is None  # Grafana gives it one on import
    (source,) = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == DATASOURCE
        assert panel["targets"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"])
    faults = [a for a in board["annotations"]["list"] if a.get("name") == "Faults"]
    assert [a["datasource"] for a in faults] == [DATASOURCE]
