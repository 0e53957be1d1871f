"""The README documents what the code registers; drift fails here."""

from __future__ import annotations

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
