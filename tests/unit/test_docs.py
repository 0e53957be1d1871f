"""The README documents what the code registers; drift fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sinks.config import SinkConfig
from sinks.effects import EFFECTS
from tests.helpers import REPO

README = (REPO / "README.md").read_text()


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


def _sections(text: str, level: int = 3) -> dict[str, str]:
    """A page's sections of `level` (3: `###`) by heading text, each up to the next heading
    of that level or higher."""
    parts = re.split(rf"^(#{{1,{level}}} .*)$", text, flags=re.M)
    heads = [head.lstrip("#").strip() for head in parts[1::2]]
    return dict(zip(heads, parts[2::2], strict=True))


def test_every_journal_pattern_is_described_in_run_directory_doc():
    from loadtest.analysis.rundir import JOURNAL_PATTERNS

    text = (DOCS / "run-directory.md").read_text()
    headings = set(re.findall(r"^### `([^`]+)`", text, flags=re.M))
    assert set(JOURNAL_PATTERNS.values()) <= headings


COLUMNS = re.compile(r"^`(\w+)` columns \(bold: needed\): (.+?)\.$", flags=re.M | re.S)


def _documented_columns(section: str) -> tuple[str, list[tuple[str, bool]]]:
    """The record class a journal's section names, and its column list: (name, needed)."""
    found = COLUMNS.findall(section)
    assert len(found) == 1, "one '`XRecord` columns (bold: needed): ...' paragraph"
    record, body = found[0]
    columns = [(name, bold == "**") for bold, name in re.findall(r"(\*\*)?`(\w+)`", body)]
    return record, columns


def test_each_journals_columns_in_run_directory_doc_are_its_records():
    """The page lists each journal's columns (needed ones in bold) as its record in
    maildrill/records.py has them: the record is the contract, the page cannot drift."""
    from loadtest.analysis.rundir import JOURNAL_PATTERNS
    from maildrill.records import RECORDS

    sections = _sections((DOCS / "run-directory.md").read_text())
    assert set(RECORDS) == set(JOURNAL_PATTERNS)
    for kind, record in RECORDS.items():
        heading = next(h for h in sections if h.startswith(f"`{JOURNAL_PATTERNS[kind]}`"))
        name, columns = _documented_columns(sections[heading])
        assert name == record.__name__, heading
        wanted = [(c.name, c.required) for c in record.columns()]
        assert columns == wanted, f"{heading}: not as maildrill.records.{name} has them"


def test_the_column_list_reader_sees_bold_and_order():
    name, columns = _documented_columns(
        "Text.\n\n`XRecord` columns (bold: needed): **`time`**, `a_b`,\n**`c`**.\n\nMore."
    )
    assert name == "XRecord"
    assert columns == [("time", True), ("a_b", False), ("c", True)]


def test_every_slo_metric_is_defined_in_metrics_doc():
    from loadtest.analysis.summary_model import SLO_METRICS

    text = (DOCS / "metrics.md").read_text()
    assert {m for m in SLO_METRICS if f"`{m}`" not in text} == set()


def _code_words(text: str) -> set[str]:
    """Every word inside a code span: `{name, rule, limit}` defines all three."""
    return {w for span in re.findall(r"`([^`]+)`", text) for w in re.findall(r"\w+", span)}


# Parts of the Summary that record the run itself (described with their files in
# run-directory.md); every other part holds metrics, defined in metrics.md.
RUN_RECORD_PARTS = (
    "Summary", "Preflight", "PreflightFlag", "JournalProblems", "UnreadableLines",
    "MissingLines", "Harness", "JournalSize",
)  # fmt: skip


def _summary_parts() -> dict[str, type]:
    """Every part of summary.json: the `Part` models of summary_model.py, by name."""
    from loadtest.analysis import summary_model as m

    return {
        name: obj
        for name, obj in vars(m).items()
        if isinstance(obj, type) and issubclass(obj, m.Part) and obj is not m.Part
    }


def _not_in(words: set[str], parts: list[type]) -> list[str]:
    return sorted(
        f"{part.__name__}.{name}" for part in parts for name in part.model_fields
        if name not in words
    )  # fmt: skip


def test_every_field_of_the_metric_parts_is_defined_in_metrics_doc():
    """A metric added to the Summary model (a field, or a new part) and not defined in
    docs/metrics.md fails here."""
    parts = _summary_parts()
    assert set(RUN_RECORD_PARTS) < set(parts)
    metric_parts = [model for name, model in parts.items() if name not in RUN_RECORD_PARTS]
    assert _not_in(_code_words((DOCS / "metrics.md").read_text()), metric_parts) == []


def test_every_field_of_the_run_record_parts_is_described_in_run_directory_doc():
    """What summary.json says of the run itself (the top level, pre-flight, journal
    problems, the harness record) is described with the files it comes from."""
    parts = _summary_parts()
    record_parts = [parts[name] for name in RUN_RECORD_PARTS]
    assert _not_in(_code_words((DOCS / "run-directory.md").read_text()), record_parts) == []


def test_every_summary_key_of_a_run_is_in_the_generated_reference(tmp_path, capsys):
    """Keys are read from a real summary.json (a hand-built run through `maildrill report`):
    each is in docs/summary.md's table of its part, so nothing the file holds is undocumented."""
    from loadtest.cli import main
    from tests import runs

    run_dir = runs.drill(tmp_path / "run")
    main(["report", str(run_dir)])
    capsys.readouterr()
    summary = json.loads((run_dir / "summary.json").read_text())
    reference = _sections((DOCS / "summary.md").read_text(), level=2)

    def keys(section: str) -> set[str]:
        return set(re.findall(r"^\| `(\w+)` \|", reference[section], flags=re.M))

    assert set(summary) <= keys("Summary")
    assert set(summary["messages"]) <= keys("Messages")
    assert summary["failovers"]
    assert set(summary["failovers"][0]) <= keys("Failover")
    assert set(summary["slo"]["checks"][0]) <= keys("SloCheck")
