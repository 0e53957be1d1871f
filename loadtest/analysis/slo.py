"""SLO checks: each rule's limit, measured value and verdict; no value is a failure."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from loadtest.scenario import parse_slo

OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt,
}  # fmt: skip


FAULT_TIMINGS = frozenset({"detection_s", "failover_s", "failback_s", "recovery_s"})

# The journals (kinds, as loadtest.analysis.journals reads them) each metric is counted
# from. A message's fate is decided by its attempts and by every place it can be found.
_MESSAGES = ("attempts", "receipts", "relay", "proxy", "mta_queue")
SOURCES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(("lost", "duplicates", "phantom", "failed", "stranded", "not_sent",
                     "unverified", "accepted_ratio"), _MESSAGES),
    **dict.fromkeys(FAULT_TIMINGS, ("attempts", "faults")),
}  # fmt: skip
ATTEMPTS_ONLY = ("attempts",)  # latency, lateness, throughput: the client's own record


def check(
    rules: list[str],
    values: Mapping[str, float | None],
    faults: int | None = None,
    unreadable: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """Verdict per rule. A value that could not be measured fails, except a fault timing
    in a run with no fault at all (`faults == 0`), which does not apply.

    `unreadable`: journal file -> (kind, lines that could not be read). A rule counted from
    a journal with unreadable lines cannot pass, whatever its measured value: the lines
    may be the receipts of messages that now read as lost (or the attempts of messages
    lost for real), so the value is unverified, and the note names the files.
    """
    checks = []
    for rule in rules:
        metric, op, limit = parse_slo(rule)
        value = values.get(metric)
        check: dict[str, Any] = {"name": metric, "rule": rule, "limit": limit, "value": value}
        doubt = _doubt(metric, unreadable or {})
        if value is None and metric in FAULT_TIMINGS and faults == 0:
            check.update(passed=True, note="no fault in this run")
        elif doubt:
            check.update(passed=False, note=doubt)
        else:
            check["passed"] = value is not None and OPS[op](value, limit)
            if value is None:
                check["note"] = "not measured"
        checks.append(check)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def _doubt(metric: str, unreadable: Mapping[str, tuple[str, int]]) -> str:
    """Why `metric` cannot be verified ('' when it can)."""
    sources = SOURCES.get(metric, ATTEMPTS_ONLY)
    files = sorted(name for name, (kind, lines) in unreadable.items() if lines and kind in sources)
    if not files:
        return ""
    lines = sum(unreadable[name][1] for name in files)
    return f"unverified: {lines} unreadable journal line{'s' * (lines != 1)} in {', '.join(files)}"


def metric_values(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The SLO metrics of a summary (worst case over faults for the timings)."""
    m = summary["messages"]
    values: dict[str, float | None] = {
        k: m[k] for k in ("lost", "duplicates", "phantom", "failed", "stranded", "not_sent")
    }
    values["unverified"] = m.get("unverified", 0)
    lat = summary["latency_ms"]
    for p in ("p50", "p95", "p99"):
        values[f"{p}_latency_ms"] = lat.get(p)
    values["max_latency_ms"] = lat.get("max")
    late = summary.get("lateness_ms", {})
    values["p95_lateness_ms"] = late.get("p95")
    values["p99_lateness_ms"] = late.get("p99")
    values["min_throughput"] = summary["throughput"]["mean_msgs_per_s"]
    planned = m["planned"]
    values["accepted_ratio"] = m["accepted"] / planned if planned else None
    for key in ("detection_s", "failover_s", "failback_s", "recovery_s"):
        measured = [f[key] for f in summary["failovers"] if f.get(key) is not None]
        missing = any(f.get(key) is None for f in summary["failovers"])
        values[key] = None if (missing or not measured) else max(measured)
    return values
