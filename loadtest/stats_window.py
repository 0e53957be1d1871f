"""Locust's own statistics kept to a window, so a Locust process does not grow with the run.

Locust keeps, in the process that holds the run's totals (the local runner, or the master
that merges its workers' reports), two things that grow with time, not with messages:

- per request name, the requests and failures of every second of the run
  (`StatsEntry.num_reqs_per_sec`, `num_fail_per_sec`: a key per second). Locust reads them
  only for its current rates, over the last 12 seconds;
- `RequestStats.history`, a snapshot of the totals every 5 seconds, for the charts of its
  web UI and HTML report.

Measured (benchmarks/soak.py's README section): 8 hours of two servers add about 13 MB to
a Locust process of about 90 MB, above the 5 % a soak allows. `trim` drops the seconds
older than `KEEP_S` and the snapshots beyond the last `HISTORY_KEEP` (the charts show the
last hour); every total, percentile and current rate Locust reports stays as it was (its
totals are counters, its percentiles a bounded dict of rounded times). `register` trims
every `EVERY_S` in the local runner and the master; a worker's statistics are reset at
each report to the master, so they never grow.
"""

from __future__ import annotations

import time

import gevent
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import RequestStats

KEEP_S = 60  # seconds of per-second counts kept: Locust's current rates read the last 12
HISTORY_KEEP = 720  # snapshots kept (one every 5 s): the web UI's charts show the last hour
EVERY_S = 30.0


def trim(
    stats: RequestStats, now: float, keep_s: int = KEEP_S, history_keep: int = HISTORY_KEEP
) -> int:
    """Drop the per-second counts older than `keep_s` before `now` and the history beyond
    its last `history_keep` snapshots; how many items were dropped."""
    oldest = int(now) - keep_s
    dropped = 0
    for entry in (stats.total, *stats.entries.values()):
        for per_second in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
            old = [second for second in per_second if second < oldest]
            for second in old:
                del per_second[second]
            dropped += len(old)
    excess = len(stats.history) - history_keep
    if excess > 0:
        del stats.history[:excess]
        dropped += excess
    return dropped


def register(environment: Environment) -> None:
    """init event: trim this process's statistics every EVERY_S (not on a worker)."""
    if isinstance(environment.runner, WorkerRunner):
        return

    def trim_forever() -> None:
        while True:
            gevent.sleep(EVERY_S)
            trim(environment.stats, time.time())

    gevent.spawn(trim_forever)
