"""Locust's statistics kept to a window (loadtest.stats_window): hours of seconds leave a
bounded number of per-second counts and history snapshots, and every figure Locust reports
(totals, failures, current and total rates, percentiles) is the same as without the trim.

Locust monkey-patches the process that imports it (gevent), so the run is played in a
child Python and its figures come back as JSON; the clock is the child's own, stepped a
second at a time, so hours take a second or two."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

HOURS = 3

CHILD = """
import json, sys, time
from locust.stats import HISTORY_STATS_INTERVAL_SEC, RequestStats, update_stats_history
from loadtest.stats_window import EVERY_S, HISTORY_KEEP, KEEP_S, trim

HOURS = int(sys.argv[1])
clock = [1_800_000_000.0]
time.time = lambda: clock[0]


class Runner:
    user_count = 20

    def __init__(self, stats):
        self.stats = stats


def run(stats, trimmed):
    requests = failures = 0
    runner = Runner(stats)
    for second in range(HOURS * 3600):
        clock[0] = 1_800_000_000.0 + second
        for i, server in enumerate(("primary", "secondary", "primary")):
            stats.log_request("SMTP", server, 2 + (second + i) % 7, 4000)
            requests += 1
        if second % 60 == 0:
            stats.log_error("SMTP", "secondary", "deferred at rcpt 451")
            failures += 1
        if second % HISTORY_STATS_INTERVAL_SEC == 0:
            update_stats_history(runner)
        if trimmed and second % EVERY_S == 0:
            trim(stats, clock[0])
    if trimmed:
        trim(stats, clock[0])
    return requests, failures


def figures(stats):
    out = []
    for entry in (stats.total, *(stats.entries[k] for k in sorted(stats.entries))):
        out.append([entry.num_requests, entry.num_failures, entry.current_rps,
                    entry.current_fail_per_sec, entry.total_rps, entry.avg_response_time,
                    entry.get_response_time_percentile(0.95), entry.max_response_time,
                    entry.get_current_response_time_percentile(0.95)])
    return out


def sizes(stats):
    return {
        "per_second": max(len(e.num_reqs_per_sec) for e in (stats.total, *stats.entries.values())),
        "fail_per_second": max(
            len(e.num_fail_per_sec) for e in (stats.total, *stats.entries.values())
        ),
        "history": len(stats.history),
    }


plain, kept = RequestStats(), RequestStats()
out = {"counted": run(plain, False), "counted_kept": run(kept, True),
       "plain": sizes(plain), "kept": sizes(kept),
       "total": [kept.total.num_requests, kept.total.num_failures],
       "history_tail_same": kept.history == plain.history[-len(kept.history):],
       "figures_plain": figures(plain), "figures_kept": figures(kept),
       "interval": HISTORY_STATS_INTERVAL_SEC, "keep_s": KEEP_S, "history_keep": HISTORY_KEEP}
print(json.dumps(out))
"""


def test_hours_of_a_run_keep_a_window_and_report_the_same():
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(HOURS)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    got = json.loads(done.stdout)
    requests, failures = got["counted"]
    assert got["counted_kept"] == got["counted"]
    assert got["total"] == [requests, failures]
    # Untrimmed, Locust keeps a key per second and a snapshot per 5 s of the whole run.
    assert got["plain"]["per_second"] == HOURS * 3600
    assert got["plain"]["history"] == HOURS * 3600 // got["interval"]
    assert got["kept"]["per_second"] <= got["keep_s"] + 1
    assert got["kept"]["fail_per_second"] <= got["keep_s"] + 1
    assert got["kept"]["history"] == got["history_keep"] < got["plain"]["history"]
    assert got["history_tail_same"]
    assert got["figures_kept"] == got["figures_plain"]
