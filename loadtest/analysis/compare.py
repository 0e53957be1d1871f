"""Two runs side by side: what changed from run A to run B, and whether it got better.

Pure functions from two `Summary` models to rows; `render` lays the rows out as Markdown.
Every metric has a sense (higher or lower is better); a change within `SAME_WITHIN` of
the old value, or with no value on one side, has no direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.analysis.render_md import cell
from loadtest.analysis.summary_model import Failover, Percentiles, Summary
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


MESSAGE_SENSES = {
    "planned": NEUTRAL, "attempted": NEUTRAL, "accepted": HIGHER, "failed": LOWER,
    "received_unique": HIGHER, "lost": LOWER, "duplicates": LOWER, "phantom": LOWER,
    "stranded": LOWER, "not_sent": LOWER, "in_flight": LOWER, "unverified": LOWER,
}  # fmt: skip
PERCENTILE_KEYS = ("p50", "p90", "p95", "p99", "max")
FAILOVER_TIMES = ("detection_s", "failover_s", "failback_s", "recovery_s", "longest_gap_s")
FAILOVER_COUNTS = ("messages_delayed", "messages_failed")


def _pair(a: object, b: object, key: str) -> tuple[float | None, float | None]:
    return _value(getattr(a, key, None)), _value(getattr(b, key, None))


def rows(a: Summary, b: Summary) -> list[Row]:
    out: list[Row] = []
    for key, sense in MESSAGE_SENSES.items():
        out.append(Row("messages", key, *_pair(a.messages, b.messages, key), sense))
    # A higher peak can be a backlog flushed after a stall: a change, not an improvement.
    for key, sense in (("mean_msgs_per_s", HIGHER), ("peak_msgs_per_s", NEUTRAL)):
        out.append(Row("throughput", key, *_pair(a.throughput, b.throughput, key), sense))
    servers_a, servers_b = a.throughput.per_server, b.throughput.per_server
    for name in _names(servers_a, servers_b):
        out.append(Row("throughput", f"{name} mean_msgs_per_s",
                       *_pair(servers_a.get(name), servers_b.get(name), "mean_msgs_per_s"),
                       NEUTRAL))  # fmt: skip
    sections: tuple[tuple[str, Percentiles, Percentiles], ...] = (
        ("latency", a.latency_ms, b.latency_ms),
        ("response time", a.response_time_ms, b.response_time_ms),
        ("lateness", a.lateness_ms, b.lateness_ms),
    )
    for label, pa, pb in sections:
        for key in PERCENTILE_KEYS:
            out.append(Row(f"{label} (ms)", key, *_pair(pa, pb, key), LOWER))
        if label != "latency":
            continue
        latency_a, latency_b = a.latency_ms.per_server, b.latency_ms.per_server
        for name in _names(latency_a, latency_b):
            for key in ("p50", "p95", "p99"):
                out.append(Row("latency (ms)", f"{name} {key}",
                               *_pair(latency_a.get(name), latency_b.get(name), key),
                               LOWER))  # fmt: skip
    out += _failover_rows(a.failovers, b.failovers)
    for key in ("knee_msgs_per_s", "max_stable_msgs_per_s"):
        pair = _pair(a.capacity, b.capacity, key)
        if pair != (None, None):
            out.append(Row("capacity", key, *pair, HIGHER))
    out.append(Row("slo", "passed (1 yes, 0 no)", *_pair(a.slo, b.slo, "passed"), HIGHER))
    return out


def _names(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    return list(a) + [name for name in b if name not in a]


def _failover_rows(a: list[Failover], b: list[Failover]) -> list[Row]:
    """Faults matched by (target, kind) in order of onset."""
    out = []
    for label, fa, fb in _match(a, b):
        for key in FAILOVER_TIMES + FAILOVER_COUNTS:
            out.append(Row(label, key, *_pair(fa, fb, key), LOWER))
    return out


def _match(
    a: list[Failover], b: list[Failover]
) -> list[tuple[str, Failover | None, Failover | None]]:
    def keyed(faults: list[Failover]) -> dict[tuple[str, str, int], Failover]:
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
