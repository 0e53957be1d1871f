"""The files of a run directory besides its journals: read, checked, or refused in one line.

`run.json`, `harness.json`, `preflight.json`, `summary.json` and `scenario.yaml` are written
by maildrill in one piece. One that is there but cannot be read, is not the JSON object it
should be, or holds a value of the wrong type was damaged after the run; analysing the run
with it would be guessing, so `RunDirError` names the file (and the line where there is one)
and the command exits 2. A file that is absent is a run that did not get that far; the
caller decides what its absence means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadtest.scenario import Scenario, parse_scenario, read_yaml


class RunDirError(ValueError):
    """A file of a run directory the analysis cannot use; the message names it."""

    def __init__(self, path: Path, reason: str, line: int | None = None) -> None:
        where = f"{path}: line {line}" if line else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line


Shape = Mapping[str, tuple[Callable[[Any], bool], str]]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _events(value: Any) -> bool:
    """Harness events: objects whose `time`, when there, is a number (reports subtract it)."""
    return _objects(value) and all(_number(e.get("time", 0)) for e in value)


def _flags(value: Any) -> bool:
    """Pre-flight flags: objects with a `message` (`maildrill report` prints it)."""
    return _objects(value) and all(isinstance(f.get("message"), str) for f in value)


def _manifest(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(entry, dict) and _count(entry.get("bytes")) and _count(entry.get("lines"))
        for entry in value.values()
    )


# Each file's keys the analysis uses: what their values must be (absent is fine).
NUMBER = (_number, "a finite number")
TEXT_OR_NULL = (_text_or_none, "text or null")
OBJECTS = (_objects, "a list of objects")
TEXT = (lambda v: isinstance(v, str), "text")
RUN: Shape = {
    "run_id": TEXT,
    "scenario": TEXT,
    "t0": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    "planned": (_count, "a whole number >= 0"),
    "started_at": NUMBER,
    "workers": (lambda v: isinstance(v, list), "a list"),
}
HARNESS: Shape = {
    "partial": (lambda v: isinstance(v, bool), "true or false"),
    "interrupted_by": TEXT_OR_NULL,
    "locust_exit_code": (lambda v: v is None or _number(v), "a number or null"),
    "sink_deaths": OBJECTS,
    "workers_lost": OBJECTS,
    "faults": OBJECTS,
    "events": (_events, "a list of objects with a number time"),
    "finished_at": NUMBER,
    "journals": (_manifest, "an object of {bytes, lines} per journal"),
    "sender": TEXT,
    "t0": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
}
# harness.json's `sender` when the mail came from another sender than maildrill's (a
# platform sending to `maildrill sinks`): the run directory then has no attempts journal.
EXTERNAL = "external"
PREFLIGHT: Shape = {
    "ok": (lambda v: isinstance(v, bool), "true or false"),
    "reference": TEXT_OR_NULL,
    "flags": (_flags, "a list of objects with a text message"),
    "notes": (lambda v: isinstance(v, list), "a list"),
}
SUMMARY: Shape = {
    "messages": (lambda v: isinstance(v, dict), "an object"),
    "failovers": OBJECTS,
    "slo": (lambda v: isinstance(v, dict), "an object"),
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path, shape: Shape) -> dict[str, Any] | None:
    """A JSON object file; None when it is absent. Damaged or of another shape: RunDirError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunDirError(path, f"cannot read: {exc.strerror}") from None
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise RunDirError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise RunDirError(path, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RunDirError(path, f"expected a JSON object, found {type(value).__name__}")
    for key, (check, expected) in shape.items():
        if key in value and not check(value[key]):
            raise RunDirError(path, f"{key}: expected {expected}, found {_short(value[key])}")
    return value


# The journals of a run directory, by kind (file name patterns); each is described, with
# its columns and writer, in docs/run-directory.md (tests/unit/test_docs.py holds them together).
JOURNAL_PATTERNS = {
    "attempts": "attempts*.csv", "receipts": "receipts*.csv", "refusals": "refusals*.csv",
    "faults": "faults*.csv", "relay": "relay*.csv", "mta_queue": "mta-queue*.csv",
    "proxy": "proxy-*.csv", "probes": "probes*.csv",
}  # fmt: skip


def journal_manifest(run_dir: Path) -> dict[str, dict[str, int]]:
    """Each journal's size and line count once every writer has stopped: harness.json keeps
    them, so a journal cut short at a line boundary later (no torn line to give it away)
    is still seen as cut, not read as mail that never arrived."""
    manifest = {}
    for pattern in JOURNAL_PATTERNS.values():
        for path in sorted(run_dir.glob(pattern)):
            manifest[path.name] = {"bytes": path.stat().st_size, "lines": count_lines(path)}
    return manifest


def count_lines(path: Path) -> int:
    """Newlines in a file, read a megabyte at a time (journals run to gigabytes)."""
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read_scenario(run_dir: Path) -> Scenario | None:
    """scenario.yaml as run; None when the run directory has none."""
    path = run_dir / "scenario.yaml"
    if not path.exists():
        return None
    return parse_scenario(read_yaml(path), str(path))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
