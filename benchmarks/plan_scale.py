"""`maildrill plan` at campaign scale: 10 million messages over 10 hours, in well under a
second, because the model costs time steps, not messages (issue 16 part 4).

Run: .venv/bin/python benchmarks/plan_scale.py [--messages N] [--hours H] [--rounds R]

The plan (docs/examples/plan-10m.yaml, built here so the benchmark reads no file): a ramp
to the peak at 60 % of the window, transactional (5 %, first) and promotional mail, a
primary of 500 and a secondary of 200 msgs/s in a pool, the primary gone at the peak for
4 hours with a 30 s failover and a 60 s failback, 20 % headroom, deadline at the window's
end. It misses, so the answer includes the bisection for the extra rate that would meet it
(a few dozen runs of the model). Timed in this process (imports done), best of `--rounds`:

(a) the plan: `command.compute` (spec to answer, extra rate included);
(b) the same plan with 10,000 messages and capacities scaled down alike.

The last line is `ratio plan/1s=… big/small=… steps=… solves=…`: (a) in seconds
(target <= 1, i.e. under a second), and (a)/(b) per run of the model (the bisection may
take a step more or less for one of them): ~1 when the cost does not grow with messages.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.plan import command, evaluate  # noqa: E402
from loadtest.plan.spec import parse_plan  # noqa: E402


def spec(messages: int, hours: float) -> dict[str, Any]:
    scale = messages / 10_000_000
    return {
        "campaign": {
            "messages": messages,
            "window_h": hours,
            "shape": "ramp",
            "peak_at": 0.6,
            "streams": [
                {"name": "transactional", "share": 0.05, "priority": 10},
                {"name": "promotional", "share": 0.95},
            ],
        },
        "capacity": {"servers": {"primary": 500 * scale, "secondary": 200 * scale}},
        "failover": {"detection_s": 5, "failover_s": 30, "failback_s": 60},
        "outage": {"server": "primary", "at": "peak", "duration": "4h"},
        "headroom": 0.2,
    }


class Counting:
    """Counts the model's runs (the bisection's included) without changing them."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = evaluate.answer

    def __call__(self, *args: Any, **kw: Any) -> evaluate.Answer:
        self.calls += 1
        return self.real(*args, **kw)


def best(data: dict[str, Any], rounds: int) -> tuple[float, command.Outcome]:
    times, outcome = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        outcome = command.compute(parse_plan(data, "benchmark"))
        times.append(time.perf_counter() - t)
    assert outcome is not None
    return min(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    counter = Counting()
    evaluate.answer = counter  # type: ignore[assignment]
    try:
        big_s, big = best(spec(args.messages, args.hours), args.rounds)
        solves = counter.calls // args.rounds
        counter.calls = 0
        small_s, _ = best(spec(10_000, args.hours), args.rounds)
        small_solves = counter.calls // args.rounds
    finally:
        evaluate.answer = counter.real  # type: ignore[assignment]
    p = big.plan
    extra = p.extra.msgs_per_s if p.extra else 0.0
    print(f"plan: {p.messages:,.0f} messages over {args.hours:g} h, peak "
          f"{p.peak_offered_msgs_per_s:.1f} msgs/s; backlog peak {p.peak_backlog:,.0f}; "
          f"last delivered at {p.completion_s} s; met {p.met}; extra {extra} msgs/s")  # fmt: skip
    print(f"(a) {args.messages:,} messages: {big_s * 1000:.1f} ms ({solves} model runs)")
    print(f"(b) 10,000 messages: {small_s * 1000:.1f} ms ({small_solves} model runs)")
    steps = len(big.answer.flow.t) - 1
    per_run = (big_s / solves) / (small_s / small_solves)
    print(f"ratio plan/1s={big_s:.3f} big/small={per_run:.2f} steps={steps} solves={solves}")


if __name__ == "__main__":
    main()
