"""The README documents what the code registers; drift fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sinks.config import SinkConfig
from sinks.effects import EFFECTS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_kind_has_a_row_in_the_readme_table():
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", README, flags=re.M))
    assert rows == set(EFFECTS)


def test_every_sink_field_appears_in_the_readme_example():
    for field in SinkConfig.model_fields:
        assert re.search(rf"^\s+(- )?{field}:", README, flags=re.M), field


def test_the_two_commands_are_near_the_top():
    head = README[:1500]
    assert "make demo" in head
    assert "make test" in head


# docs/: the design, cited by path from the code; drift between the two fails here.

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CITING = [REPO / "README.md", *DOCS.glob("*.md")] + [
    path
    for folder in ("maildrill", "sinks", "loadtest", "scenarios", "benchmarks", "tests")
    for path in (REPO / folder).rglob("*.py")
]


def test_every_docs_page_cited_in_code_or_readme_exists():
    cited = {
        (path.relative_to(REPO), page)
        for path in CITING
        for page in re.findall(r"docs/[A-Za-z0-9_.-]+\.md", path.read_text(encoding="utf-8"))
    }
    assert cited  # the code does cite the design
    missing = sorted(f"{where}: {page}" for where, page in cited if not (REPO / page).is_file())
    assert not missing


def test_links_between_docs_pages_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page.name}: {target}"


def test_no_code_cites_the_design_outside_the_repository():
    here = Path(__file__).resolve()
    stale = [str(p.relative_to(REPO)) for p in CITING if p != here and "DESIGN.md" in p.read_text()]
    assert stale == ["docs/README.md"]  # which says that it replaces it


def test_every_journal_pattern_is_described_in_run_directory_doc():
    from loadtest.analysis.rundir import JOURNAL_PATTERNS

    text = (DOCS / "run-directory.md").read_text()
    headings = set(re.findall(r"^### `([^`]+)`", text, flags=re.M))
    assert set(JOURNAL_PATTERNS.values()) <= headings


def test_every_slo_metric_is_defined_in_metrics_doc():
    from loadtest.scenario import SLO_METRICS

    text = (DOCS / "metrics.md").read_text()
    assert {m for m in SLO_METRICS if f"`{m}`" not in text} == set()


def test_every_summary_key_of_a_run_is_in_the_contract(tmp_path, capsys):
    """Keys are read from a real summary.json (a hand-built run through `maildrill report`),
    so a key added to the summary and not to docs/run-directory.md fails here."""
    from loadtest.cli import main
    from tests import runs

    run_dir = runs.drill(tmp_path / "run")
    main(["report", str(run_dir)])
    capsys.readouterr()
    summary = json.loads((run_dir / "summary.json").read_text())
    contract = (DOCS / "run-directory.md").read_text().split("### `summary.json`")[1]
    metrics = (DOCS / "metrics.md").read_text()
    assert {k for k in summary if f"| `{k}` |" not in contract} == set()
    assert {k for k in summary["messages"] if f"`{k}`" not in metrics} == set()
    assert summary["failovers"]
    for key in summary["failovers"][0]:
        assert re.search(rf"\b{key}\b", contract), key
        assert f"`{key}`" in metrics, key
