"""Where `maildrill report`'s memory goes, stage by stage (issue 18 part 2).

Run: .venv/bin/python benchmarks/analysis_stages.py RUN_DIR [--no-trace]

It runs what `maildrill report RUN_DIR` runs (the summary, then the series, plots and
pages), with every stage of the analysis wrapped: the journals' load, `compact` and its
message keys, reconcile, recipients, streams, backlog, the latency histograms, the time
series, the plots. Each stage prints its own peak above what was held when it began
(tracemalloc: Python objects and numpy/pandas buffers alike), what it left held, its
seconds, and the process' RSS after it. The process' peak RSS is the last line.

A run directory to measure: `benchmarks/analysis_scale.py --synthesise-only --dir DIR
--attempts 3000000`. tracemalloc slows the load about twice: `--no-trace` gives RSS and
seconds only.
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.analysis import (  # noqa: E402
    auth,
    backlog,
    bounces,
    capacity,
    delivery,
    failover,
    journals,
    loaded,
    metrics,
    msg_keys,
    plots,
    recipients,
    reconcile,
    report,
    rolling,
    streams,
    summary,
    view,
)

# (module, function, label): the stages, as the analysis calls them (module.function).
STAGES = (
    (journals, "load", "load (journals.load)"),
    (loaded, "compact", "compact (categories, keys)"),
    (msg_keys, "share", "  msg_keys.share"),
    (reconcile, "messages", "reconcile.messages"),
    (reconcile, "count", "reconcile.count"),
    (recipients, "count", "recipients.count"),
    (failover, "analyse", "failover.analyse"),
    (streams, "summarise", "streams.summarise"),
    (metrics, "throughput", "metrics.throughput"),
    (metrics, "latency", "metrics.latency (histograms)"),
    (metrics, "response_time", "metrics.response_time"),
    (metrics, "lateness", "metrics.lateness"),
    (metrics, "errors", "metrics.errors"),
    (rolling, "floor", "rolling.floor"),
    (delivery, "summarise", "delivery.summarise"),
    (capacity, "capacity", "capacity.capacity"),
    (backlog, "summarise", "backlog.summarise"),
    (bounces, "summarise", "bounces.summarise"),
    (auth, "summarise", "auth.summarise"),
    (report, "series", "timeseries (report.series)"),
    (plots, "all_plots", "plots.all_plots"),
    (view, "build", "view.build"),
)

MB = 1 << 20


class Meter:
    """Per stage: calls, seconds, peak above its start, held after; nested stages too."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.stack: list[list[float]] = []  # per open stage: [start held, peak seen]
        self.rows: dict[str, list[float]] = {}  # label: [calls, s, peak above, held after]

    def _traced(self) -> tuple[float, float]:
        return tracemalloc.get_traced_memory() if self.trace else (0.0, 0.0)

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def measured(*args: Any, **kwargs: Any) -> Any:
            current, peak = self._traced()
            for frame in self.stack:  # the enclosing stages' peak, before it is reset
                frame[1] = max(frame[1], peak)
            if self.trace:
                tracemalloc.reset_peak()
            self.stack.append([current, current])
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                after, peak = self._traced()
                start, seen = self.stack.pop()
                top = max(seen, peak)
                for frame in self.stack:
                    frame[1] = max(frame[1], top)
                row = self.rows.setdefault(label, [0, 0.0, 0.0, 0.0])
                row[0] += 1
                row[1] += seconds
                row[2] = max(row[2], top - start)
                row[3] = after
                rss = _rss_mb()
                print(
                    f"{label:34} {seconds:7.2f} s  peak +{(top - start) / MB:7.0f} MB  "
                    f"held {after / MB:7.0f} MB  rss {rss:6.0f} MB",
                    flush=True,
                )

        return measured


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--no-trace", action="store_true", help="RSS and seconds only")
    args = parser.parse_args()
    meter = Meter(trace=not args.no_trace)
    for module, name, label in STAGES:
        setattr(module, name, meter.wrap(label, getattr(module, name)))
    if meter.trace:
        tracemalloc.start()
    started = time.perf_counter()
    summary.write(args.run_dir)
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    traced = tracemalloc.get_traced_memory()[1] / MB if meter.trace else 0.0
    print(f"total {total:.1f} s; peak RSS {peak:.0f} MB; last traced peak {traced:.0f} MB")


if __name__ == "__main__":
    main()
