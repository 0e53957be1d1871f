"""Where `maildrill report`'s memory goes, stage by stage (issue 18 part 2).

Run: .venv/bin/python benchmarks/analysis_stages.py RUN_DIR [--no-trace]

It runs what `maildrill report RUN_DIR` runs (the summary, then the series, plots and
pages), with every stage of the analysis wrapped: the journals' load, `compact` and its
message keys, reconcile, recipients, streams, backlog, the latency histograms, the time
series, the plots. Each stage prints its own peak above what was held when it began
(tracemalloc: Python objects and numpy/pandas buffers alike), what it left held, its
seconds, and the process' RSS after it. The process' peak RSS is the last line. With
`--columns`, what the loaded attempts and receipts and reconcile's per-message table hold,
column by column (each text object counted once, however many cells point at it).

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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.analysis import (  # noqa: E402
    attempt_figures,
    auth,
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
    (failover, "tally", "failover.tally"),
    (streams, "tally", "streams.tally"),
    (attempt_figures.Part, "add", "attempt_figures.Part.add (histograms, instants)"),
    (attempt_figures.Part, "result", "attempt_figures.Part.result (throughput, floor, backlog)"),
    (metrics, "errors", "metrics.errors"),
    (delivery, "tally", "delivery.tally"),
    (capacity, "capacity", "capacity.capacity"),
    (bounces, "tally", "bounces.tally"),
    (auth, "tally", "auth.tally"),
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


def held_bytes(frame: pd.DataFrame, seen: set[int]) -> Counter[str]:
    """Bytes per column: arrays, and each text object once (`seen`: counted already)."""
    out: Counter[str] = Counter()
    for name in frame.columns:
        values = frame[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[name] += values.cat.codes.to_numpy().nbytes
            categories = values.cat.categories
            if id(categories) in seen:  # the same ids in attempts and receipts: once
                continue
            seen.add(id(categories))
            values = pd.Series(categories)
        array = values.to_numpy()
        out[name] += array.nbytes
        if array.dtype == object:
            ids = np.fromiter(map(id, array), np.int64, len(array))
            _, first = np.unique(ids, return_index=True)
            fresh = [i for i in first if int(ids[i]) not in seen]
            seen.update(int(ids[i]) for i in fresh)
            out[name] += sum(sys.getsizeof(array[i]) for i in fresh)
    return out


def print_columns(frames: dict[str, pd.DataFrame]) -> None:
    seen: set[int] = set()
    for title, frame in frames.items():
        held = held_bytes(frame, seen)
        total = sum(held.values())
        per_row = total / max(1, len(frame))
        print(f"{title}: {len(frame)} rows, {total / MB:.0f} MB ({per_row:.0f} B/row)")
        for name, size in held.most_common():
            print(f"    {name:22} {size / MB:7.1f} MB")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--no-trace", action="store_true", help="RSS and seconds only")
    parser.add_argument("--columns", action="store_true", help="memory held per column")
    args = parser.parse_args()
    meter = Meter(trace=not args.no_trace)
    for module, name, label in STAGES:
        setattr(module, name, meter.wrap(label, getattr(module, name)))
    kept: dict[str, pd.DataFrame] = {}
    if args.columns:
        compact, messages = loaded.compact, reconcile.messages

        def keep_journals(*a: Any, **k: Any) -> Any:
            out = compact(*a, **k)
            kept["attempts"], kept["receipts"] = out.attempts, out.receipts
            return out

        def keep_per(*a: Any, **k: Any) -> Any:
            out = messages(*a, **k)
            kept.setdefault("per (reconcile.messages)", out)
            return out

        loaded.compact, reconcile.messages = keep_journals, keep_per
    if meter.trace:
        tracemalloc.start()
    started = time.perf_counter()
    summary.write(args.run_dir)
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    traced = tracemalloc.get_traced_memory()[1] / MB if meter.trace else 0.0
    print(f"total {total:.1f} s; peak RSS {peak:.0f} MB; last traced peak {traced:.0f} MB")
    if kept:
        tracemalloc.stop()
        print_columns(kept)


if __name__ == "__main__":
    main()
