"""Two runs side by side: what changed from run A to run B, and whether it got better.

Pure functions from two summary dicts to rows; `render` lays the rows out as Markdown.
Every metric has a sense (higher or lower is better); a change within `SAME_WITHIN` of
the old value, or with no value on one side, has no direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.analysis.render_md import cell
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


def _get(summary: Mapping[str, Any], *path: str) -> float | None:
    node: Any = summary
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return _value(node)


MESSAGE_SENSES = {
    "planned": NEUTRAL, "attempted": NEUTRAL, "accepted": HIGHER, "failed": LOWER,
    "received_unique": HIGHER, "lost": LOWER, "duplicates": LOWER, "phantom": LOWER,
    "stranded": LOWER, "not_sent": LOWER, "in_flight": LOWER, "unverified": LOWER,
}  # fmt: skip
PERCENTILE_KEYS = ("p50", "p90", "p95", "p99", "max")
FAILOVER_TIMES = ("detection_s", "failover_s", "failback_s", "recovery_s", "longest_gap_s")
FAILOVER_COUNTS = ("messages_delayed", "messages_failed")


def rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    out: list[Row] = []
    for key, sense in MESSAGE_SENSES.items():
        out.append(Row("messages", key, _get(a, "messages", key), _get(b, "messages", key), sense))
    # A higher peak can be a backlog flushed after a stall: a change, not an improvement.
    for key, sense in (("mean_msgs_per_s", HIGHER), ("peak_msgs_per_s", NEUTRAL)):
        out.append(Row("throughput", key, _get(a, "throughput", key), _get(b, "throughput", key),
                       sense))  # fmt: skip
    for name in _keys(a, b, "throughput", "per_server"):
        path = ("throughput", "per_server", name, "mean_msgs_per_s")
        out.append(
            Row("throughput", f"{name} mean_msgs_per_s", _get(a, *path), _get(b, *path), NEUTRAL)
        )
    for section, label in (("latency_ms", "latency"), ("response_time_ms", "response time"),
                           ("lateness_ms", "lateness")):  # fmt: skip
        for key in PERCENTILE_KEYS:
            out.append(Row(f"{label} (ms)", key, _get(a, section, key), _get(b, section, key),
                           LOWER))  # fmt: skip
        if section != "latency_ms":
            continue
        for name in _keys(a, b, "latency_ms", "per_server"):
            for key in ("p50", "p95", "p99"):
                path = ("latency_ms", "per_server", name, key)
                out.append(Row("latency (ms)", f"{name} {key}", _get(a, *path), _get(b, *path),
                               LOWER))  # fmt: skip
    out += _failover_rows(a.get("failovers", []), b.get("failovers", []))
    for key in ("knee_msgs_per_s", "max_stable_msgs_per_s"):
        if _get(a, "capacity", key) is not None or _get(b, "capacity", key) is not None:
            out.append(Row("capacity", key, _get(a, "capacity", key), _get(b, "capacity", key),
                           HIGHER))  # fmt: skip
    out.append(Row("slo", "passed (1 yes, 0 no)", _get(a, "slo", "passed"),
                   _get(b, "slo", "passed"), HIGHER))  # fmt: skip
    return out


def _keys(a: Mapping[str, Any], b: Mapping[str, Any], *path: str) -> list[str]:
    names: list[str] = []
    for summary in (a, b):
        node: Any = summary
        for key in path:
            node = node.get(key, {}) if isinstance(node, Mapping) else {}
        names += [n for n in node if n not in names]
    return names


def _failover_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Row]:
    """Faults matched by (target, kind) in order of onset."""
    out = []
    for label, fa, fb in _match(a, b):
        for key in FAILOVER_TIMES:
            out.append(Row(label, key, _value(fa.get(key)), _value(fb.get(key)), LOWER))
        for key in FAILOVER_COUNTS:
            out.append(Row(label, key, _value(fa.get(key)), _value(fb.get(key)), LOWER))
    return out


def _match(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    def keyed(faults: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
        seen: dict[tuple[str, str], int] = {}
        out = {}
        for f in sorted(faults, key=lambda f: f.get("onset_s") or 0.0):
            k = (str(f.get("target")), str(f.get("kind")))
            seen[k] = seen.get(k, 0) + 1
            out[(*k, seen[k])] = f
        return out

    ka, kb = keyed(a), keyed(b)
    matched = []
    for key in list(ka) + [k for k in kb if k not in ka]:
        target, kind, n = key
        label = f"fault {kind} on {target}" + (f" #{n}" if n > 1 else "")
        matched.append((label, ka.get(key, {}), kb.get(key, {})))
    return matched


def _signed(value: float | None, suffix: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return ("+" if value > 0 else "") + num(value, digits) + suffix


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
        lines.append(
            f"| {cell(r.group)} | {cell(r.metric)} | {num(r.a)} | {num(r.b)} | "
            f"{_signed(r.delta)} | {_signed(r.change_pct, ' %', 1)} | {r.direction} |"
        )
    return "\n".join(lines) + "\n"


def load_summary(run_dir: Path) -> dict[str, Any]:
    """A run's summary.json; built from its journals (nothing written) when it has none.
    RunDirError when summary.json, or a file the journals need, is damaged."""
    from loadtest.analysis import summary as summary_mod
    from loadtest.analysis.journals import load
    from loadtest.analysis.rundir import SUMMARY, read_json

    summary = read_json(run_dir / "summary.json", SUMMARY)
    if summary is not None:
        return summary
    return summary_mod.build(load(run_dir), summary_mod.scenario_of(run_dir))
