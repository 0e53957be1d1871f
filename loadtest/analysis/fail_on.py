"""`maildrill compare A B --fail-on RULE`: the conditions under which run B fails against A.

A rule names the failure, not the goal (an SLO names the goal): it is broken when its
comparison holds. The grammar is small on purpose; a sign before the number is what makes
it a change:

    RULE   = METRIC OP LIMIT
    OP     = ">" | ">=" | "<" | "<=" | "=="
    LIMIT  = N        B's own value                  lost>0
           | +N, -N   the change B - A               failover_s>+0.5
           | +N%, -N% the change in % of |A|         p95_latency_ms>+10%   min_throughput<-5%

METRIC is an SLO metric (`SLO_METRICS`: `lost`, `p95_latency_ms`, `failover_s` (the worst
over the faults), `min_throughput`, `accepted_ratio`, ...; on one stream
`streams.transactional.p95_response_time_ms`) or the dotted path of a number
in summary.json (docs/summary.md): `messages.retried`, `throughput.peak_msgs_per_s`,
`latency_ms.per_server.secondary.p95`, `slo.passed` (1 or 0). A map's key may hold dots
(a server named `mx.1`): the path takes the key the summary has.

A rule that needs a value one run does not have (a metric not measured, a server only one
run had, a figure a run without the sender's journal could not count: its
`needs_sender_journal`) cannot be checked and counts as broken: a gate that cannot look
does not pass.
A change in % from 0 is 0 % when B is 0 too, else +inf % or -inf % (any rise from nothing
breaks `>+N%`).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from loadtest.analysis import slo
from loadtest.analysis.compare import is_number, is_part, signed, without_none
from loadtest.analysis.render_md import cell
from loadtest.analysis.slo import OPS
from loadtest.analysis.summary_model import SLO_METRICS, Summary, slo_metric
from loadtest.analysis.view import exact, num
from maildrill.numbers import number_problem

Change = Literal["value", "delta", "percent"]
_RULE = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_.-]+)\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<percent>%?)\s*$"
)
EXAMPLES = "e.g. lost>0, failover_s>+0.5, p95_latency_ms>+10%"


@dataclass(frozen=True)
class Rule:
    text: str  # as given
    metric: str
    op: str
    limit: float  # signed for a change
    change: Change


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    a: float | None
    b: float | None
    measured: float | None  # B, B - A, or the change in %
    broken: bool
    note: str = ""


def parse(text: str) -> Rule:
    """One rule; ValueError (one line, naming the problem) for anything else."""
    match = _RULE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not METRIC OP LIMIT ({EXAMPLES})")
    metric, op, sign, number, percent = match.group("metric", "op", "sign", "number", "percent")
    if slo_metric(metric) is None and not _known_path(Summary, metric.split(".")):
        raise ValueError(
            f"{text!r}: unknown metric {metric!r}: an SLO metric "
            f"({', '.join(sorted(SLO_METRICS))}) or the path of a number in summary.json "
            "(docs/summary.md), e.g. messages.retried"
        )
    if percent and not sign:
        raise ValueError(f"{text!r}: a % is a change from A: write +{number}% or -{number}%")
    limit = float(sign + number)
    problem = number_problem(limit)
    if problem:
        raise ValueError(f"{text!r}: the limit {problem}")
    change: Change = "percent" if percent else "delta" if sign else "value"
    return Rule(text.strip(), metric, op, limit, change)


def _known_path(kind: Any, parts: Sequence[str]) -> bool:
    """Whether `parts` leads to a number in a summary of this model (any key of a map)."""
    kind = without_none(kind)
    if not parts:
        return is_number(kind)
    if is_part(kind):
        field = kind.model_fields.get(parts[0])
        return field is not None and _known_path(field.annotation, parts[1:])
    if typing.get_origin(kind) is dict:
        inner = typing.get_args(kind)[1]
        return any(_known_path(inner, parts[n:]) for n in range(1, len(parts) + 1))
    return False


def value(summary: Summary, metric: str) -> float | None:
    """The metric's value in one run; None: not measured, or not in this run. A run
    without the sender's journal reads 0 where it could not count (`needs_sender_journal`):
    that is no measurement either."""
    known = slo_metric(metric)
    if slo.lies_in(known.keys if known else [metric], summary.needs_sender_journal):
        return None
    if known is not None:
        return known.value(summary)
    return _walk(summary, metric.split("."))


def _walk(node: Any, parts: Sequence[str]) -> float | None:
    if not parts:
        return float(node) if isinstance(node, int | float) else None
    if isinstance(node, BaseModel):
        return _walk(getattr(node, parts[0], None), parts[1:])
    if isinstance(node, Mapping):
        for n in range(len(parts), 0, -1):  # the longest key the map has: "mx.1" before "mx"
            key = ".".join(parts[:n])
            if key in node:
                return _walk(node[key], parts[n:])
    return None


def evaluate(rule: Rule, a: Summary, b: Summary) -> Verdict:
    va, vb = value(a, rule.metric), value(b, rule.metric)
    missing = [name for name, v in (("A", va), ("B", vb)) if v is None]
    if rule.change == "value":
        missing = [m for m in missing if m == "B"]
    if missing:
        where = "either run" if len(missing) == 2 else f"run {missing[0]}"
        return Verdict(rule, va, vb, None, True, f"not measured in {where}: cannot be checked")
    assert vb is not None
    measured = vb if rule.change == "value" else change(va, vb, rule.change)
    return Verdict(rule, va, vb, measured, OPS[rule.op](measured, rule.limit))


def change(a: float | None, b: float, kind: Change) -> float:
    """B - A, or that in % of |A|: from 0, 0 % when B is 0 too, else +-inf %."""
    assert a is not None
    delta = b - a
    if kind == "delta":
        return delta
    if a == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return 100.0 * delta / abs(a)


def check(rules: Sequence[Rule], a: Summary, b: Summary) -> list[Verdict]:
    return [evaluate(rule, a, b) for rule in rules]


def _shown(verdict: Verdict) -> str:
    measured, kind = verdict.measured, verdict.rule.change
    if measured is None:
        return num(None)
    if kind == "value":
        return exact(measured)
    return signed(measured, " %" if kind == "percent" else "", exact)


def render(verdicts: Sequence[Verdict]) -> str:
    """The rules as a section of compare.md: each with A, B, what was measured, the verdict."""
    broken = sum(1 for v in verdicts if v.broken)
    lines = [
        "",
        "## --fail-on rules",
        "",
        f"{broken} of {len(verdicts)} broken (a rule is broken when its comparison holds).",
        "",
        "| rule | A | B | measured | verdict | note |",
        "|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        lines.append(
            f"| {cell(v.rule.text)} | {exact(v.a)} | {exact(v.b)} | {_shown(v)} | "
            f"{'BROKEN' if v.broken else 'ok'} | {cell(v.note)} |"
        )
    return "\n".join(lines) + "\n"


def summary_line(verdicts: Sequence[Verdict]) -> str:
    """One line for stderr: how many rules broke, and which."""
    broken = [v.rule.text for v in verdicts if v.broken]
    if not broken:
        return f"compare: every --fail-on rule held ({len(verdicts)})"
    return f"compare: {len(broken)} of {len(verdicts)} --fail-on rules broken: {', '.join(broken)}"
