"""The analysis of a mid-sized synthetic run, pinned: summary.json and the series CSVs of
benchmarks/analysis_scale.py's journals (30,000 attempts: a primary and a secondary, the
primary down for a tenth of the run, 421s retried, duplicates, one recipient a message)
must come out byte for byte as the golden files, which the analysis made before it was
changed to read the journals in less memory (issue 18). UPDATE_GOLDEN=1 rewrites them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from loadtest.analysis import report, summary, timeseries
from loadtest.analysis.loaded import RunDir
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden" / "analysis-synthetic"
ATTEMPTS = 30_000


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "analysis_scale", REPO / "benchmarks" / "analysis_scale.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    counts = _benchmark().synthesise(path, ATTEMPTS)
    assert counts["attempts"] == ATTEMPTS
    assert counts["receipts"] == ATTEMPTS
    return path


def _same_as_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{name} differs from {golden}"


def test_summary_is_unchanged(run_dir: Path) -> None:
    made = summary.write(run_dir, reports=False)
    text = (run_dir / "summary.json").read_text(encoding="utf-8")
    assert made.messages.accepted == ATTEMPTS * 49 // 50  # every message, once
    assert made.messages.duplicates == ATTEMPTS // 50  # the receipts beyond the messages
    _same_as_golden("summary.json", text)


def test_series_are_unchanged(run_dir: Path) -> None:
    frames = report.series(RunDir.load(run_dir).journals)
    written = timeseries.write_csvs(run_dir, frames)
    assert sorted(written) == ["latency", "lateness", "replies", "servers"]
    for name, path in sorted(written.items()):
        _same_as_golden(f"series-{name}.csv", path.read_text(encoding="utf-8"))
