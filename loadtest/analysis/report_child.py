"""A report's series, plots and pages made in a forked child while the summary is made.

`maildrill report` on a million attempts spent about a second and a half on the series
and the plots (the per-second frames, matplotlib's import, the pages) and two and a half
on the summary, one after the other on one core. The series need only the journals, so a
child forked after the load makes them beside the summary, on the machine's second core.
It makes the summary's parts that need only the attempts first (`attempt_figures`: the
latency, response time and lateness histograms, throughput and backlog, about 0.6 s) and
hands them back through a pipe; then it waits for the summary (pickled through another)
and draws the plots and pages from it. The parent writes summary.json as always. What
goes to the child is chosen so that both take about as long (the bounces stay here).

Nothing changes in what is written: the child runs `report.write` itself, on the frames
it made. If the child cannot (it died, or raised), the parent makes the reports itself,
one after the other as before, so an error is raised and shown as it always was. The
child is forked only where it can gain and is safe (`worth_forking`): two cores or more, a
run of MIN_ATTEMPTS or more (below that the fork costs more than it saves), a system with
fork, and no other thread in the process.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
from pathlib import Path
from types import TracebackType

import pandas as pd

from loadtest.analysis import attempt_figures, in_child, report
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Summary

MIN_ATTEMPTS = 100_000
PLOTS = "loadtest.analysis.plots"  # report.write imports it when it draws


def worth_forking(run: RunDir) -> bool:
    """Whether a child may gain here. Only from a process with no other thread: a fork
    copies one thread, and a lock another held at that moment (a stream's, a library's)
    would stay held in the child forever. `maildrill report` has none; `maildrill run`
    may still have some (the metrics exporter lingering) and then reports in one process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return in_child.may_fork() and cores > 1 and len(run.journals.attempts) >= MIN_ATTEMPTS


class Reports:
    """`with Reports(run_dir, run) as reports: ...; reports.write(summary)`, with
    `reports.figures` for `summary.summarise`. Leaving the block without `write` (the
    summary raised) ends the child with nothing written."""

    def __init__(self, run_dir: Path, run: RunDir, fork: bool | None = None) -> None:
        self.run_dir, self.run = run_dir, run
        self.fork = worth_forking(run) if fork is None else fork
        self.pid: int | None = None
        self._to_child: int | None = None
        self._from_child: int | None = None

    def __enter__(self) -> Reports:
        if not self.fork:
            return self
        read_end, write_end = os.pipe()  # the summary, to the child
        figures_read, figures_write = os.pipe()  # the attempts' figures, from the child
        # A collection walks every object and writes to its header: in either process,
        # that copies every shared page. Objects made before the fork are left out of
        # collections until the child is done (`_done`).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:  # no memory or process left for a child: all of it made here
            gc.unfreeze()
            for end in (read_end, write_end, figures_read, figures_write):
                os.close(end)
            return self
        if pid == 0:  # the child: never returns
            os.close(write_end)
            os.close(figures_read)
            self._child(read_end, figures_write)
        os.close(read_end)
        os.close(figures_write)
        self.pid, self._to_child, self._from_child = pid, write_end, figures_read
        return self

    def _child(self, read_end: int, figures_write: int) -> None:
        code = 1
        try:
            attempts = attempt_figures.run_attempts(self.run.journals)
            made = (len(attempts), attempt_figures.of(self.run, attempts))
            with os.fdopen(figures_write, "wb") as pipe:
                pipe.write(pickle.dumps(made))
            del attempts
            frames = report.frames_of(self.run)
            importlib.import_module(PLOTS)  # matplotlib's import, beside the summary too
            with os.fdopen(read_end, "rb") as pipe:
                data = pipe.read()
            if data:  # nothing: the parent gave up (its summary raised)
                report.write(self.run_dir, pickle.loads(data), self.run, frames)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent makes the reports itself and shows why
            code = 1
        finally:
            os._exit(code)

    def figures(self, run: RunDir, attempts: pd.DataFrame) -> attempt_figures.AttemptFigures:
        """`attempt_figures.of(run, attempts)`, as the child made them from the same rows
        (this run's attempts, `attempt_figures.run_attempts`), or made here if it could
        not."""
        if self._from_child is not None:
            with os.fdopen(self._from_child, "rb") as pipe:
                self._from_child = None
                data = pipe.read()
            if data:
                rows, figures = pickle.loads(data)
                if run is self.run and rows == len(attempts):
                    assert isinstance(figures, attempt_figures.AttemptFigures)
                    return figures
        return attempt_figures.of(run, attempts)

    def write(self, summary: Summary) -> None:
        """The series, plots and pages of `summary`: the child's, or made here."""
        if self.pid is not None and self._to_child is not None:
            sent = True
            try:
                with os.fdopen(self._to_child, "wb") as pipe:
                    self._to_child = None
                    pipe.write(pickle.dumps(summary))
            except BrokenPipeError:  # the child died before it read
                sent = False
            status = self._done()
            if sent and os.waitstatus_to_exitcode(status) == 0:
                return
        report.write(self.run_dir, summary, self.run)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._from_child is not None:
            os.close(self._from_child)
            self._from_child = None
        if self._to_child is not None:
            os.close(self._to_child)  # the child reads nothing: it writes nothing, and ends
            self._to_child = None
        if self.pid is not None:
            self._done()

    def _done(self) -> int:
        """Wait for the child; its wait status."""
        assert self.pid is not None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        gc.unfreeze()
        return status
