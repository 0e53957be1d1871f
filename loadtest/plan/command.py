"""`maildrill plan`: read the spec, ask the model, say what would meet a miss, write
plan.json, plan.md, plan.png and plan-series.csv. The steps only; each lives in its module."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loadtest.plan import evaluate, inputs, plot, render, result, series
from loadtest.plan.spec import PlanError, PlanSpec

PLAN_JSON, PLAN_MD, PLAN_PNG, PLAN_CSV = "plan.json", "plan.md", "plan.png", "plan-series.csv"


@dataclass(frozen=True)
class Outcome:
    plan: result.Plan
    answer: evaluate.Answer


def extra_of(q: evaluate.Question) -> result.Extra:
    """What would meet a plan that misses: the least pooled extra rate, and as servers."""
    need = evaluate.extra_needed(q)
    if need is None:
        why = (
            "the deadline falls before the campaign's last message is due"
            if q.deadline_s < q.offered.end_s
            else "nothing is delivered during the failover gap, too near the deadline to catch up"
        )
        return result.Extra(msgs_per_s=None, why=why)
    with_it = evaluate.answer(q, need)
    return result.Extra(
        msgs_per_s=round(need, 3),
        servers=evaluate.extra_servers(q, need),
        completion_s=None if with_it.completion_s is None else round(with_it.completion_s, 3),
    )


def compute(spec: PlanSpec) -> Outcome:
    """Pure but for the files the spec names (run directories, a scenario)."""
    q, sources = inputs.question(spec)
    a = evaluate.answer(q)
    extra = None if a.met else extra_of(q)
    return Outcome(result.build(a, sources, spec.campaign.shape, extra), a)


def write(outcome: Outcome, out: Path) -> None:
    """plan.json, plan.md, plan.png, plan-series.csv in `out` (made if needed); OSError
    when it cannot."""
    out.mkdir(parents=True, exist_ok=True)
    data = outcome.plan.model_dump(mode="json")
    (out / PLAN_JSON).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / PLAN_MD).write_text(render.markdown(outcome.plan, PLAN_PNG), encoding="utf-8")
    plot.draw(outcome.answer, out / PLAN_PNG)
    series.write_csv(outcome.answer, out / PLAN_CSV)


__all__ = ["Outcome", "PlanError", "compute", "write"]
