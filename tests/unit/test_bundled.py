"""The bundled scenarios come from the `scenarios` package, not from a path beside the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bundled
from loadtest.bundled import scenario_path
from loadtest.scenario import ScenarioError
from tests.helpers import REPO

CHECKOUT = REPO / "scenarios"


def test_every_yaml_file_of_the_package_is_a_bundled_name():
    assert bundled.bundled_names() == sorted(p.stem for p in CHECKOUT.glob("*.yaml"))


def test_text_and_file_are_the_same_scenario():
    path = bundled.scenario_file("default")
    assert path is not None
    assert path.read_text(encoding="utf-8") == bundled.scenario_text("default")
    assert "name: default" in bundled.scenario_text("default")


@pytest.mark.parametrize("name", ["nope", "../pyproject", "__init__", "README"])
def test_a_name_outside_the_bundle_is_not_found(name):
    assert bundled.scenario_file(name) is None
    with pytest.raises(KeyError):
        bundled.scenario_text(name)


def test_a_file_comes_before_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_text("name: mine\n")
    assert scenario_path("default") == Path("default")
    assert scenario_path(None) == bundled.scenario_file("default")


def test_an_unknown_name_lists_the_bundled_ones():
    with pytest.raises(ScenarioError, match=r"nope: no such file .*\(backup-mx, .*streams"):
        scenario_path("nope")
