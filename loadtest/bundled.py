"""The scenarios shipped with maildrill, found with importlib.resources.

They live in the top-level `scenarios/` package as package data, so the same lookup works
from the checkout (editable install, or PYTHONPATH) and from a wheel installed anywhere:
nothing here is relative to the current directory or to this file.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from loadtest.scenario import ScenarioError

PACKAGE = "scenarios"
SUFFIX = ".yaml"

# Resources extracted to a temporary file (only when the package is not plain files on disk,
# e.g. imported from a zip) stay there until maildrill exits: callers hold their paths.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def _folder() -> Traversable:
    return resources.files(PACKAGE)


def bundled_names() -> list[str]:
    """The names `maildrill run NAME` accepts, sorted."""
    return sorted(
        entry.name.removesuffix(SUFFIX)
        for entry in _folder().iterdir()
        if entry.name.endswith(SUFFIX) and entry.is_file()
    )


def scenario_text(name: str) -> str:
    """A bundled scenario's YAML text; KeyError for a name that is not bundled."""
    if name not in bundled_names():
        raise KeyError(name)
    return (_folder() / f"{name}{SUFFIX}").read_text(encoding="utf-8")


def scenario_file(name: str) -> Path | None:
    """A bundled scenario as a file on disk (the scenario reader and its messages name a
    path); None for a name that is not bundled, so a name can never walk out of the package."""
    if name not in bundled_names():
        return None
    entry = _folder() / f"{name}{SUFFIX}"
    if isinstance(entry, Path):
        return entry
    return _extracted.enter_context(resources.as_file(entry))


def bundled_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every bundled scenario, for `maildrill scenarios`."""
    out = []
    for name in bundled_names():
        data = yaml.safe_load(scenario_text(name)) or {}
        out.append((name, str(data.get("description", ""))))
    return out


def scenario_path(name: str | Path | None) -> Path:
    """What `--scenario` / `maildrill run NAME` names: a file, or else a bundled scenario
    ('default' when nothing is named). A file of that name in the current folder wins."""
    if name and Path(name).exists():
        return Path(name)
    found = scenario_file(str(name or "default"))
    if found is not None:
        return found
    known = ", ".join(bundled_names())
    raise ScenarioError(f"{name}: no such file and no bundled scenario of that name ({known})")
