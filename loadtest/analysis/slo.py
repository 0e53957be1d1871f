"""SLO rules: parsed (the scenario validates its `slo:` with parse_slo), then checked:
each rule's limit, measured value and verdict; no value is a failure."""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from loadtest.analysis.summary_model import (
    SLO_METRICS,
    STREAM_SLO_METRICS,
    SloCheck,
    SloMetric,
    SloVerdict,
    Summary,
    slo_metric,
)
from maildrill.numbers import number_problem

OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt,
}  # fmt: skip

# A metric is lower case; a stream's name in `streams.STREAM.METRIC` may have capitals and -.
_RULE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(<=|>=|==|<|>)\s*(-?[0-9.]+)\s*$")


def parse_slo(rule: str) -> tuple[str, str, float]:
    """'metric <op> number' -> (metric, op, limit); the metric one of SLO_METRICS (the
    summary model's one list of what an SLO may name), or `streams.STREAM.METRIC` with
    METRIC one of STREAM_SLO_METRICS (whether the campaign has STREAM is the scenario's
    check, scenario_checks.slo_streams_known)."""
    match = _RULE.match(rule)
    if match is None:
        raise ValueError(f"{rule!r} is not 'metric <op> number'")
    metric, op, value = match.groups()
    if slo_metric(metric) is None:
        raise ValueError(
            f"unknown metric {metric!r}; known: {', '.join(sorted(SLO_METRICS))}; per stream: "
            f"streams.STREAM.METRIC, METRIC one of {', '.join(sorted(STREAM_SLO_METRICS))}"
        )
    limit = float(value)
    problem = number_problem(limit)
    if problem:
        raise ValueError(f"{rule!r}: the limit {problem}")
    return metric, op, limit


def check(
    rules: list[str],
    values: Mapping[str, float | None],
    faults: int | None = None,
    unreadable: Mapping[str, tuple[str, int]] | None = None,
    unmeasured: Collection[str] = (),
) -> SloVerdict:
    """Verdict per rule. A value that could not be measured fails, except a fault timing
    in a run with no fault at all (`faults == 0`), which does not apply.

    `unreadable`: journal file -> (kind, lines that could not be read). A rule counted from
    a journal with unreadable lines cannot pass, whatever its measured value: the lines
    may be the receipts of messages that now read as lost (or the attempts of messages
    lost for real), so the value is unverified, and the note names the files.

    `unmeasured`: keys of the summary this run could not measure (`needs_sender_journal`:
    no attempts journal). A rule on one is not measured, and says why: a 0 there is no
    pass.
    """
    checks = []
    for rule in rules:
        metric, op, limit = parse_slo(rule)
        value = values.get(metric)
        doubt = _doubt(metric, unreadable or {})
        verdict: dict[str, Any]  # a note only where there is one: no "note" key otherwise
        if value is None and _metric(metric).over_faults and faults == 0:
            verdict = {"passed": True, "note": "no fault in this run"}
        elif _needs(metric, unmeasured):
            verdict = {"passed": False, "note": NEEDS_SENDER_NOTE}
            value = None
        elif doubt:
            verdict = {"passed": False, "note": doubt}
        elif value is None:
            verdict = {"passed": False, "note": "not measured"}
        else:
            verdict = {"passed": OPS[op](value, limit)}
        checks.append(SloCheck(name=metric, rule=rule, limit=limit, value=value, **verdict))
    return SloVerdict(passed=all(c.passed for c in checks), checks=checks)


NEEDS_SENDER_NOTE = "not measured: needs the sender's journal (attempts.csv)"


def _needs(metric: str, unmeasured: Collection[str]) -> bool:
    """Whether the metric's value (or what it is divided by) lies in an unmeasured key."""
    return lies_in(_metric(metric).keys, unmeasured)


def lies_in(paths: Iterable[str], unmeasured: Collection[str]) -> bool:
    """Whether one of `paths` (summary.json keys, "messages.lost") is, or is inside, one of
    the `unmeasured` keys (`needs_sender_journal`; a * there stands for any map key:
    "relay.*.end_to_end_ms")."""
    return any(_inside(path, key) for path in paths for key in unmeasured)


def _inside(path: str, key: str) -> bool:
    if "*" in key:
        return fnmatch.fnmatchcase(path, key) or fnmatch.fnmatchcase(path, f"{key}.*")
    return path == key or path.startswith(f"{key}.")


def _doubt(metric: str, unreadable: Mapping[str, tuple[str, int]]) -> str:
    """Why `metric` cannot be verified ('' when it can)."""
    sources = _metric(metric).sources
    files = sorted(name for name, (kind, lines) in unreadable.items() if lines and kind in sources)
    if not files:
        return ""
    lines = sum(unreadable[name][1] for name in files)
    return f"unverified: {lines} unreadable journal line{'s' * (lines != 1)} in {', '.join(files)}"


def _metric(name: str) -> SloMetric:
    """The metric of a name parse_slo took."""
    metric = slo_metric(name)
    assert metric is not None, name
    return metric


def metric_values(summary: Summary) -> dict[str, float | None]:
    """The SLO metrics of a summary (worst case over faults for the timings), and each
    per-stream metric of each of its streams."""
    values = {name: metric.value(summary) for name, metric in SLO_METRICS.items()}
    for stream in summary.streams:
        for name in STREAM_SLO_METRICS:
            full = f"streams.{stream}.{name}"
            metric = slo_metric(full)  # None: a name no rule can spell (a journal's "")
            if metric is not None:
                values[full] = metric.value(summary)
    return values
