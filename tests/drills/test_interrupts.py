"""`maildrill run` interrupted at random moments: never orphans, always a partial report."""

from __future__ import annotations

import json
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loadtest.analysis.journals import load
from loadtest.cli import EXIT_PARTIAL
from tests.drills.run_helpers import descendants_alive, start_run
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

# Moments spread over the first 3 s (start-up, sinks, load): one in each of TRIALS equal
# slices, at a random place in it, so few trials still reach every stretch of the run.
TRIALS = 12
SPAN_S = 3.0


def one_trial(run_dir: Path, delay: float, sig: signal.Signals) -> dict:
    proc = start_run(run_dir, ready="scenario.yaml")
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    # A child still exiting is given a moment; an orphan stays.
    wait_until(lambda: not descendants_alive(run_dir), 5, step=0.1)
    return {
        "code": proc.returncode,
        "out": out,
        "err": err,
        "orphans": descendants_alive(run_dir),
        "delay": delay,
        "signal": sig.name,
    }


def test_interruptions_at_random_moments_across_the_start(tmp_path):
    rng = random.Random(20261128)
    plans = [
        (
            tmp_path / f"run{i}",
            (i + rng.random()) * SPAN_S / TRIALS,
            (signal.SIGINT, signal.SIGTERM)[i % 2],
        )
        for i in range(TRIALS)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda plan: one_trial(*plan), plans))
    for (run_dir, _, _), result in zip(plans, results, strict=True):
        context = f"{result['signal']} after {result['delay']:.2f} s: {result['err'][-800:]}"
        assert result["orphans"] == [], context
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["partial"] is True, context
        # Never 0, even when every SLO passed on the part that ran (README, exit codes).
        assert result["code"] == EXIT_PARTIAL, context
        verdict = result["out"].strip().splitlines()[-1]
        cause = f"interrupted by {result['signal']}"
        assert verdict.startswith(f"PARTIAL RUN ({cause}): SLOs "), context
        journals = load(run_dir)  # readable, whatever the moment
        assert journals.skipped == {}, context
        assert summary["messages"]["lost"] == 0, context
