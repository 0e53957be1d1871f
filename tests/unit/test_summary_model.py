"""The Summary model is summary.json: built from a loaded run directory without reading a
file, written key for key, read back from this version or an older one; the SLO metric
names are the model's; the generated reference in docs/ matches the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from loadtest.analysis import compare, slo
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_doc import MARKDOWN_FILE, SCHEMA_FILE, markdown, schema
from loadtest.analysis.summary_model import SLO_METRICS, Harness, Part, Preflight, Summary
from loadtest.cli import EXIT_BAD_INPUT, main
from tests import runs

# Keys a built summary leaves out when they have nothing to say (the others are always
# there); harness.json and preflight.json are copied as they were written.
SOMETIMES_ABSENT = {("SloCheck", "note"), ("MtaPath", "relayed_by")}
COPIED = (Harness, Preflight)


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = runs.drill(tmp_path_factory.mktemp("drill") / "run")
    summary_mod.write(run_dir, reports=False)
    return run_dir


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = runs.steps(tmp_path_factory.mktemp("steps") / "run")
    summary_mod.write(run_dir, reports=False)
    return run_dir


def parts(node: Any) -> list[Part]:
    """Every part of a summary, depth first."""
    found: list[Part] = []
    if isinstance(node, Part):
        found.append(node)
        node = [getattr(node, name) for name in type(node).model_fields]
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list | tuple):
        for child in node:
            found += parts(child)
    return found


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_summary_json_is_the_model_dumped_and_reads_back_the_same(name, request):
    run_dir = request.getfixturevalue(name)
    text = (run_dir / "summary.json").read_text()
    summary = Summary.model_validate(json.loads(text))
    assert summary_mod.as_json(summary) == text
    assert summary == summary_mod.summarise(RunDir.load(run_dir))


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_a_built_summary_gives_every_key(name, request):
    """A key left at its default is not written: summarise must give each one (a new
    metric added to the model and not computed would silently be missing)."""
    summary = summary_mod.summarise(RunDir.load(request.getfixturevalue(name)))
    seen = set()
    for part in parts(summary):
        if isinstance(part, COPIED):
            continue
        cls = type(part).__name__
        seen.add(cls)
        left_out = {(cls, key) for key in type(part).model_fields} - {
            (cls, key) for key in part.model_fields_set
        }
        assert left_out <= SOMETIMES_ABSENT, left_out
        assert not part.model_extra, (cls, part.model_extra)  # a key the model does not know
    assert {"Summary", "Messages", "Failover", "FaultPhase", "Capacity"} & seen


def test_summarise_reads_no_file(drill, tmp_path):
    """Everything was read by RunDir.load: with the directory gone, the summary is the same."""
    copy = tmp_path / "run"
    shutil.copytree(drill, copy)
    run = RunDir.load(copy)
    shutil.rmtree(copy)
    assert summary_mod.as_json(summary_mod.summarise(run)) == (drill / "summary.json").read_text()


def older(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary.json as the first versions wrote it: only the keys of the DESIGN contract."""
    old = {k: summary[k] for k in ("scenario", "run_id", "started_at", "duration_s", "partial",
                                   "messages", "throughput", "latency_ms", "errors",
                                   "failovers", "slo")}  # fmt: skip
    old["messages"] = {k: v for k, v in summary["messages"].items()
                       if k not in ("not_sent", "in_flight", "unverified")}  # fmt: skip
    keep = ("target", "kind", "onset_s", "cleared_s", "detection_s", "failover_s", "failback_s",
            "recovery_s", "messages_delayed", "messages_failed")  # fmt: skip
    old["failovers"] = [{k: f[k] for k in keep} for f in summary["failovers"]]
    old["journal_problems"] = {"skipped_lines": summary["journal_problems"]["skipped_lines"]}
    return old


def test_an_older_summary_loads_reads_as_not_measured_and_compares(drill, tmp_path):
    data = older(json.loads((drill / "summary.json").read_text()))
    summary = Summary.model_validate(data)
    assert summary.model_dump(mode="json") == data  # written back as it was
    assert summary.response_time_ms.p95 is None
    assert summary.failovers[0].monitor_detection_s is None
    assert summary.capacity.steps == []
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    (old_dir / "summary.json").write_text(json.dumps(data))
    assert main(["compare", str(old_dir), str(drill), "--out", str(tmp_path / "c.md")]) == 0
    text = (tmp_path / "c.md").read_text()
    assert "| response time (ms) | p95 | n/a |" in text
    assert "| messages | lost | 0 | 0 | 0 | n/a | same |" in text


def test_a_newer_summary_keeps_what_this_version_does_not_know(drill):
    data = json.loads((drill / "summary.json").read_text())
    data["messages"]["bounced_later"] = 3
    data["brand_new"] = {"x": 1}
    summary = Summary.model_validate(data)
    assert summary.model_dump(mode="json") == data


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["messages"].pop("lost"), "messages.lost"),
        (lambda s: s["latency_ms"].update(p95="fast"), "latency_ms.p95"),
        (lambda s: s["failovers"][0].update(onset_s=None), "failovers[0].onset_s"),
    ],
)
def test_compare_names_a_summary_that_does_not_fit_the_model(
    drill, tmp_path, capsys, change, named
):
    data = json.loads((drill / "summary.json").read_text())
    change(data)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text(json.dumps(data))
    assert main(["compare", str(drill), str(bad), "--out", str(tmp_path / "c.md")]) == (
        EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "summary.json" in err
    assert named in err


def test_slo_metric_names_are_the_models(drill):
    """One list: the scenario accepts exactly the metrics the model maps, and each maps to
    a field the model declares (no extra key, no typo), with a value in a real summary."""
    assert all(slo.parse_slo(f"{name} <= 1")[0] == name for name in SLO_METRICS)
    with pytest.raises(ValueError, match="unknown metric 'nonsense'"):
        slo.parse_slo("nonsense <= 1")
    summary = compare.load_summary(drill)
    for name, metric in SLO_METRICS.items():
        for path in filter(None, (metric.path, metric.per)):
            node: Any = summary
            model: Any = type(summary)  # a part absent here (auth: null) is walked by type
            for key in path.replace("failovers[]", "failovers.0").split("."):
                if isinstance(node, list):
                    node = node[int(key)]
                    continue
                assert node is None or isinstance(node, BaseModel), (name, key)
                model = type(node) if node is not None else model
                assert key in model.model_fields, (name, key)
                field_type = compare.without_none(model.model_fields[key].annotation)
                node = getattr(node, key) if node is not None else None
                model = field_type
            assert node is None or isinstance(node, int | float), (name, path)
    values = slo.metric_values(summary)
    m = summary.messages
    assert values["lost"] == m.lost
    assert values["accepted_ratio"] == pytest.approx(m.accepted / m.planned)
    assert values["p95_latency_ms"] == summary.latency_ms.p95
    assert values["failover_s"] == summary.failovers[0].failover_s
    assert values["mean_throughput"] == summary.throughput.mean_msgs_per_s
    assert values["min_throughput"] == summary.throughput.min_rolling_msgs_per_s
    assert values["recipients_lost"] == summary.recipients.lost


def test_slo_checks_read_the_summary(drill):
    """The drill's SLOs: lost unverified (a torn receipts line in a clean run)."""
    checks = {c.name: c for c in compare.load_summary(drill).slo.checks}
    assert checks["lost"].passed is False
    assert checks["lost"].note.startswith("unverified: 1 unreadable journal line")
    assert checks["failover_s"].passed is True


def test_the_reference_in_docs_matches_the_model():
    assert SCHEMA_FILE.read_text() == schema(), "run: python -m loadtest.analysis.summary_doc"
    assert MARKDOWN_FILE.read_text() == markdown(), "run: python -m loadtest.analysis.summary_doc"
    for name in SLO_METRICS:
        assert f"| `{name}` |" in markdown()
