"""The figures the analysis adds up a partition of the messages at a time come out the
same as the whole run's: the mid-sized synthetic run of test_analysis_unchanged (30,000
attempts, a fault, retries, duplicates), dealt into 3 and 7 partitions by message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.analysis import attempt_figures, partitions
from loadtest.analysis.journals import Journals
from loadtest.analysis.loaded import RunDir
from tests.unit.test_analysis_unchanged import run_dir  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def whole(run_dir: Path) -> RunDir:  # noqa: F811
    return RunDir.load(run_dir)


def shares(run: RunDir, parts: int) -> Iterator[Journals]:
    split = partitions.split(run.path, parts)
    assert split is not None
    with split:
        for part in range(parts):
            yield split.journals(part, run.journals)


@pytest.mark.parametrize("parts", [3, 7])
def test_attempt_figures_of_partitions_are_the_whole_runs(whole: RunDir, parts: int) -> None:
    expected = attempt_figures.of(whole, attempt_figures.run_attempts(whole.journals))
    part = attempt_figures.Part()
    sizes = []
    for journals in shares(whole, parts):
        attempts = attempt_figures.run_attempts(journals)
        sizes.append(len(attempts))
        part.add(attempts)
    assert len(sizes) == parts
    assert sum(sizes) == len(whole.journals.attempts)
    assert max(sizes) < len(whole.journals.attempts) / 2  # each a share, not the run
    schedule = whole.scenario.campaign.build_schedule() if whole.scenario else None
    made = part.result(schedule, whole.t0, whole.partial)
    assert made == expected
    assert made.backlog.peak > 0
    assert made.throughput.min_rolling_msgs_per_s is not None
    assert set(made.latency.per_server) == {"primary", "secondary"}
