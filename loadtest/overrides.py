"""`--set key.path=value` on a scenario's raw data, before validation."""

from __future__ import annotations

from typing import Any

import yaml

from maildrill.inputs import yaml_problem


class OverrideError(ValueError):
    pass


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Set `a.b.0.c=value` in place; the value is read as YAML (5, 0.5, true, [a, b])."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path.strip():
        raise OverrideError(f"--set {assignment!r}: expected KEY=VALUE, e.g. users=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as exc:
        raise OverrideError(
            f"--set {path.strip()}: value is not valid YAML: {yaml_problem(exc)}"
        ) from None
    keys = path.strip().split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise OverrideError(f"--set {where}: no item {key} (the list has {len(node)})")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if key not in node or node[key] is None:
                    node[key] = {}
                node = node[key]
        else:
            raise OverrideError(f"--set {where}: {'.'.join(keys[:depth])} is not a mapping or list")
