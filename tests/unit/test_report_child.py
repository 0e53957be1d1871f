"""The reports made beside the summary in a forked child (loadtest.analysis.report_child)
are byte for byte the ones made after it in one process; a child that fails leaves the
parent to make them; a summary that raises leaves no child and no report behind."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from loadtest.analysis import attempt_figures, report, report_child, summary
from tests.unit.test_analysis_unchanged import _benchmark

ATTEMPTS = 20_000
OUTPUTS = ("summary.json", "report.md", "report.html")


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("journals")
    _benchmark().synthesise(path, ATTEMPTS)
    return path


def _copy(journals: Path, to: Path) -> Path:
    shutil.copytree(journals, to)
    return to


def _outputs(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / name for name in OUTPUTS]
    files += sorted((run_dir / "series").iterdir()) + sorted((run_dir / "plots").iterdir())
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in files}


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every child forked, by pid; the fork is taken whatever the run's size and cores."""
    made: list[int] = []
    fork = os.fork

    def counted() -> int:
        pid = fork()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(report_child.os, "fork", counted)
    monkeypatch.setattr(report_child, "worth_forking", lambda run: True)
    return made


def _serial(journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    with monkeypatch.context() as m:
        m.setattr(report_child, "worth_forking", lambda run: False)
        summary.write(_copy(journals, tmp_path / "serial"))
    return _outputs(tmp_path / "serial")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_childs_reports_are_the_ones_made_in_one_process(
    journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    serial = _serial(journals, tmp_path, monkeypatch)
    asked: list[int] = []
    figures = report_child.Reports.figures

    def counted(self: report_child.Reports, run: Any, attempts: Any) -> Any:
        asked.append(len(attempts))
        return figures(self, run, attempts)

    monkeypatch.setattr(report_child.Reports, "figures", counted)
    # The parent must not make these figures or the series: they come from the child.
    made_here = _not_in_the_parent(os.getpid(), attempt_figures.of)
    monkeypatch.setattr(attempt_figures, "of", made_here)
    monkeypatch.setattr(report, "frames_of", _not_in_the_parent(os.getpid(), report.frames_of))
    summary.write(_copy(journals, tmp_path / "forked"))
    assert len(forks) == 1
    assert _gone(forks[0])
    assert asked == [ATTEMPTS]
    forked = _outputs(tmp_path / "forked")
    assert sorted(forked) == sorted(serial)
    assert len([name for name in forked if name.startswith("plots/")]) >= 3
    for name, data in serial.items():
        assert forked[name] == data, name


def _not_in_the_parent(parent: int, function: Any) -> Any:
    def guarded(*args: Any) -> Any:
        assert os.getpid() != parent, f"{function.__name__} ran in the parent"
        return function(*args)

    return guarded


def test_a_child_that_fails_leaves_the_parent_to_make_the_reports(
    journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    serial = _serial(journals, tmp_path, monkeypatch)
    parent = os.getpid()
    frames_of = report.frames_of

    def broken(run: Any) -> Any:
        if os.getpid() != parent:
            raise MemoryError("the child ran out")
        return frames_of(run)

    monkeypatch.setattr(report, "frames_of", broken)
    summary.write(_copy(journals, tmp_path / "forked"))
    assert len(forks) == 1
    assert _gone(forks[0])
    assert _outputs(tmp_path / "forked") == serial


def test_a_summary_that_raises_ends_the_child_with_nothing_written(
    journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    def fails(*args: Any) -> Any:
        raise RuntimeError("the summary failed")

    monkeypatch.setattr(summary, "summarise", fails)
    run_dir = _copy(journals, tmp_path / "forked")
    with pytest.raises(RuntimeError, match="the summary failed"):
        summary.write(run_dir)
    assert len(forks) == 1
    assert _gone(forks[0])
    for name in (*OUTPUTS, "series", "plots"):
        assert not (run_dir / name).exists(), name


def test_a_process_with_another_thread_reports_without_a_fork(
    journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork copies one thread: with another running (`maildrill run`'s metrics exporter
    lingering), a lock it holds would stay held in the child, so none is forked."""
    run_dir = _copy(journals, tmp_path / "run")
    monkeypatch.setattr(report_child, "MIN_ATTEMPTS", 0)
    run = report_child.RunDir.load(run_dir)
    alone = threading.active_count() == 1
    assert report_child.worth_forking(run) == (alone and len(os.sched_getaffinity(0)) > 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not report_child.worth_forking(run)
    finally:
        stop.set()
        other.join()


def test_a_fork_that_fails_leaves_the_parent_to_make_the_reports(
    journals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = _serial(journals, tmp_path, monkeypatch)
    monkeypatch.setattr(report_child, "worth_forking", lambda run: True)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(report_child.os, "fork", no_fork)
    before = len(os.listdir("/proc/self/fd"))
    summary.write(_copy(journals, tmp_path / "unforked"))
    assert _outputs(tmp_path / "unforked") == serial
    assert len(os.listdir("/proc/self/fd")) == before  # its pipes closed
