"""Two runs side by side: what changed from run A to run B, and whether it got better.

Pure functions from two `Summary` models to rows; `render` lays the rows out as Markdown.
Which numbers are shown, and which way is better, is the model's: every field annotated
with a `summary_model.Compare` sense, walked in the model's order, so a metric added to the
model with a sense is compared without a change here. A change within `SAME_WITHIN` of the
old value, or with no value on one side, has no direction.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from loadtest.analysis import slo
from loadtest.analysis.render_md import cell
from loadtest.analysis.summary_model import Compare, Failover, Summary
from loadtest.analysis.view import num

HIGHER, LOWER, NEUTRAL = "higher", "lower", "neutral"
SAME_WITHIN = 0.005  # a relative change below 0.5 % counts as the same


@dataclass(frozen=True)
class Row:
    group: str
    metric: str
    a: float | None
    b: float | None
    sense: str

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return self.b - self.a

    @property
    def change_pct(self) -> float | None:
        if self.delta is None or not self.a:
            return None
        return 100.0 * self.delta / abs(self.a)

    @property
    def direction(self) -> str:
        delta = self.delta
        if delta is None:
            return "n/a"
        assert self.a is not None
        if delta == 0 or abs(delta) <= SAME_WITHIN * abs(self.a):
            return "same"
        if self.sense == NEUTRAL:
            return "changed"
        up = delta > 0
        return "better" if up == (self.sense == HIGHER) else "worse"


def _value(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class _Walk:
    """Where `_rows` is: the group and label prefix shown, the summary.json key path
    ("failovers[].detection_s"), and each run's keys it could not measure."""

    group: str | None
    prefix: str
    path: str
    unmeasured: tuple[Sequence[str], Sequence[str]]

    def into(self, group: str | None, prefix: str, path: str) -> _Walk:
        return _Walk(group, prefix, path, self.unmeasured)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


def rows(a: Summary, b: Summary) -> list[Row]:
    """Every compared number of the two summaries, in the model's order. A part of the
    summary is a group of rows ("latency_ms": "latency (ms)"); a map's keys prefix its rows
    ("secondary p95"); the faults are matched by target and kind in order of onset. A run
    built from receipts alone shows no value (not its 0) where it could not count."""
    at = _Walk(None, "", "", (a.needs_sender_journal, b.needs_sender_journal))
    return list(_rows(type(a), a, b, at, sense=None))


def _rows(
    model: type[BaseModel],
    a: BaseModel | None,
    b: BaseModel | None,
    at: _Walk,
    sense: Compare | None,
) -> Iterator[Row]:
    """The rows of one part; `at.group` None: the summary itself, whose parts are groups."""
    group, prefix = at.group, at.prefix
    for name, field in model.model_fields.items():
        mark = _mark(field) or sense
        va, vb = getattr(a, name, None), getattr(b, name, None)
        kind = without_none(field.annotation)
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        inner_group = _group(name) if group is None else group
        inner_prefix = prefix if group is None else f"{prefix}{name} "
        path = at.key(name)
        if is_number(kind):
            if mark is None or (mark.only is not None and name not in mark.only):
                continue
            hidden_a, hidden_b = at.unmeasured
            pair = (
                None if slo.lies_in([path], hidden_a) else _value(va),
                None if slo.lies_in([path], hidden_b) else _value(vb),
            )
            if not (mark.if_measured and pair == (None, None)):
                label = prefix + (mark.label or name)
                yield Row(group or "run", label, *pair, mark.better)
        elif is_part(kind):
            yield from _rows(kind, va, vb, at.into(inner_group, inner_prefix, path), mark)
        elif origin is dict and is_part(args[1]):
            ma, mb = va or {}, vb or {}
            for key in _names(ma, mb):
                inner = at.into(inner_group, f"{prefix}{key} ", f"{path}.{key}")
                yield from _rows(args[1], ma.get(key), mb.get(key), inner, mark)
        elif origin is list and is_part(args[0]):
            for label, ia, ib in _match(args[0], va or [], vb or [], inner_group, name):
                yield from _rows(args[0], ia, ib, at.into(label, prefix, f"{path}[]"), mark)


def _mark(field: FieldInfo) -> Compare | None:
    return next((m for m in field.metadata if isinstance(m, Compare)), None)


def without_none(annotation: Any) -> Any:
    """X from `X | None`; a union of numbers as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return annotation


def is_number(annotation: Any) -> bool:
    """int, float, bool, or a union of them (`Number`)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    return all(k in (int, float, bool) for k in kinds)


def is_part(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _group(name: str) -> str:
    """A part's group label: "response_time_ms" is "response time (ms)"."""
    unit = " (ms)" if name.endswith("_ms") else ""
    return name.removesuffix("_ms").replace("_", " ") + unit


def _names(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    return list(a) + [name for name in b if name not in a]


def _match(
    model: type[BaseModel], a: Sequence[Any], b: Sequence[Any], group: str, name: str
) -> list[tuple[str, Any, Any]]:
    """The items of two lists side by side, each pair with its group label: faults by
    (target, kind) in order of onset, anything else by position."""
    if issubclass(model, Failover):
        return _match_faults(a, b)
    return [
        (f"{group} {name} #{i + 1}", a[i] if i < len(a) else None, b[i] if i < len(b) else None)
        for i in range(max(len(a), len(b)))
    ]


def _match_faults(
    a: Sequence[Failover], b: Sequence[Failover]
) -> list[tuple[str, Failover | None, Failover | None]]:
    def keyed(faults: Sequence[Failover]) -> dict[tuple[str, str, int], Failover]:
        seen: dict[tuple[str, str], int] = {}
        out = {}
        for f in sorted(faults, key=lambda f: f.onset_s):
            k = (f.target, f.kind)
            seen[k] = seen.get(k, 0) + 1
            out[(*k, seen[k])] = f
        return out

    ka, kb = keyed(a), keyed(b)
    matched = []
    for key in list(ka) + [k for k in kb if k not in ka]:
        target, kind, n = key
        label = f"fault {kind} on {target}" + (f" #{n}" if n > 1 else "")
        matched.append((label, ka.get(key), kb.get(key)))
    return matched


def signed(value: float | None, suffix: str = "", shown: Callable[[float], str] = num) -> str:
    """A change with its sign (+1.5, -2, 0; +inf, -inf), as `shown` writes the number;
    n/a for none. compare.md's table and its --fail-on rules (fail_on.py) both write so."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return ("+inf" if value > 0 else "-inf") + suffix
    return ("+" if value > 0 else "") + shown(value) + suffix


def render(a_name: str, b_name: str, table: list[Row]) -> str:
    changed = [r for r in table if r.direction in ("better", "worse")]
    better = sum(1 for r in changed if r.direction == "better")
    lines = [
        f"# maildrill compare: {cell(a_name)} -> {cell(b_name)}",
        "",
        f"{better} better, {len(changed) - better} worse, "
        f"{sum(1 for r in table if r.direction == 'same')} the same "
        f"(within {num(SAME_WITHIN * 100)} %), of {len(table)} metrics.",
        "",
        "| group | metric | A | B | change | change % | direction |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        pct = signed(r.change_pct, " %", lambda v: num(v, 1))
        lines.append(
            f"| {cell(r.group)} | {cell(r.metric)} | {num(r.a)} | {num(r.b)} | "
            f"{signed(r.delta)} | {pct} | {r.direction} |"
        )
    return "\n".join(lines) + "\n"


def load_summary(run_dir: Path) -> Summary:
    """A run's summary.json (of this version or an older one); built from its journals
    (nothing written) when it has none. RunDirError when summary.json, or a file the
    journals need, is damaged."""
    from loadtest.analysis.loaded import RunDir, checked
    from loadtest.analysis.rundir import SUMMARY, read_json
    from loadtest.analysis.summary import summarise

    path = run_dir / "summary.json"
    data = read_json(path, SUMMARY)
    if data is not None:
        return checked(Summary, data, path)
    return summarise(RunDir.load(run_dir))
