"""Write a run's reports: tidy series CSVs, plots/*.png, report.html and report.md.

`write` is the one entry point; it takes the loaded run directory and its `Summary`, and
leaves every rendering to its renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from loadtest.analysis import (
    attempt_figures,
    received,
    render_html,
    render_md,
    tally,
    timeseries,
    view,
    view_received,
)
from loadtest.analysis.journals import Journals
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Summary
from loadtest.scenario import Scenario

PLOTS_DIR = "plots"
KNOWN_PLOTS = ("throughput", "latency", "replies", "lateness", "capacity", "received")


@dataclass
class SeriesTally:
    """What the series need of a share of a run's messages (added over shares,
    `tally.added`): counts per second and server, sessions, latency and lateness values,
    counts per second and reply."""

    grids: list[timeseries.Grid | None]
    spans: list[pd.DataFrame]
    latency: timeseries.Values
    lateness: timeseries.Values
    replies: list[pd.DataFrame]


def series_tally(journals: Journals, t0: float) -> SeriesTally:
    attempts = attempt_figures.run_attempts(journals)
    return SeriesTally(
        grids=[timeseries.server_grid(attempts, t0)],
        # Receipts serve only the open sessions, binned from t0 over this run's seconds:
        # another run's sessions fall outside those seconds, so they need no filtering.
        spans=[timeseries.session_spans(journals.receipts)],
        latency=timeseries.latency_values(attempts, t0),
        lateness=timeseries.lateness_values(attempts, t0),
        replies=[timeseries.reply_counts(attempts, t0)],
    )


def series_of(counted: SeriesTally, t0: float) -> dict[str, pd.DataFrame]:
    return {
        "servers": timeseries.servers_of(counted.grids, counted.spans, t0),
        "latency": timeseries.latency_of(counted.latency),
        "replies": timeseries.replies_of(counted.replies),
        "lateness": timeseries.lateness_of(counted.lateness),
    }


def series(journals: Journals) -> dict[str, pd.DataFrame]:
    """The series of journals held whole."""
    return series_of(series_tally(journals, journals.t0), journals.t0)


def run_series(run: RunDir) -> dict[str, pd.DataFrame]:
    """The series of a run, held whole or read a partition of its messages at a time."""
    if run.split is None:
        return series(run.journals)
    t0 = run.journals_t0  # as `series` takes it from journals held whole
    counted = tally.total(run.each_share(lambda part: series_tally(run.share(part).journals, t0)))
    return series_of(counted, t0)


def server_order(
    scenario: Scenario | None, summary: Summary, frames: dict[str, pd.DataFrame]
) -> list[str]:
    """Scenario order (by priority) first, then any other server seen, by name."""
    order = list(scenario.ordered_servers()) if scenario is not None else []
    seen = set(summary.throughput.per_server)
    seen |= set(frames["servers"]["server"].astype(str)) if len(frames["servers"]) else set()
    return order + sorted(seen - set(order))


def received_series(run: RunDir) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """A run without the sender's journal: receipts per second and server, and the servers
    in the order the summary lists them."""
    frame, names = received.of_run(run)
    return {"received": timeseries.received(frame, names, run.t0)}, names


def frames_of(run: RunDir) -> dict[str, pd.DataFrame] | None:
    """The series a report of the sender's journal plots and saves (None without it): they
    need the journals only, not the summary, so `report_child` makes them while the
    summary is being made."""
    return run_series(run) if run.has_sender_journal else None


def write(
    run_dir: Path,
    summary: Summary,
    run: RunDir,
    frames: dict[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Series CSVs, plots, report.md and report.html in `run_dir` (the run's own directory,
    or another to write them to); returns their paths. Without the sender's journal, the
    receipts' series, plot and view (loadtest.analysis.received). `frames`: `frames_of(run)`
    when already made."""
    # Imported here: matplotlib takes half a second to import, which `report_child` spends
    # beside the summary, and a summary alone (`summary.write(reports=False)`) never needs.
    from loadtest.analysis import plots

    if summary.received is None:
        frames = frames if frames is not None else run_series(run)
        figures = plots.all_plots(frames, summary, server_order(run.scenario, summary, frames))
        build = view.build
    else:
        frames, names = received_series(run)
        figures = plots.received_plots(frames, summary, names)
        build = view_received.build
    written = {f"series/{k}": p for k, p in timeseries.write_csvs(run_dir, frames).items()}
    plots_dir = run_dir / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    pngs: dict[str, bytes] = {}
    refs = []
    for plot in figures:
        path = plots.save(plot.figure, plots_dir / f"{plot.name}.png")
        pngs[plot.name] = path.read_bytes()
        refs.append(view.PlotRef(plot.name, plot.title, f"{PLOTS_DIR}/{plot.name}.png"))
        written[f"plots/{plot.name}"] = path
    for stale in set(KNOWN_PLOTS) - set(pngs):
        (plots_dir / f"{stale}.png").unlink(missing_ok=True)
    page = build(summary, refs, run.scenario_text)
    written["report.md"] = run_dir / "report.md"
    written["report.md"].write_text(render_md.render(page), encoding="utf-8")
    written["report.html"] = run_dir / "report.html"
    written["report.html"].write_text(render_html.render(page, pngs), encoding="utf-8")
    return written
