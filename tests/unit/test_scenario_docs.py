"""scenarios/README.md carries the schema reference generated from the models."""

from __future__ import annotations

from loadtest.schema_doc import BEGIN, END, render
from tests.helpers import REPO

README = REPO / "scenarios" / "README.md"


def test_reference_matches_the_models():
    text = README.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:stop] == render(), "run: python -m loadtest.schema_doc, paste into README"


def test_every_bundled_scenario_is_in_the_table_and_documented_at_its_top():
    text = README.read_text()
    for path in sorted(README.parent.glob("*.yaml")):
        assert f"| `{path.stem}` |" in text, path.stem
        assert path.read_text().startswith(f"# {path.stem}:"), path.name
