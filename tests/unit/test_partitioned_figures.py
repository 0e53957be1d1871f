"""A run read a partition of its messages at a time (`RunDir.split`) has the summary of
the run read whole: every figure added up share by share, byte for byte in summary.json.
The mid-sized synthetic run of test_analysis_unchanged (30,000 attempts, a fault, 421s
retried, duplicates) and the small drill of test_compact_load (suppressed recipients,
bounces, two servers, an outage), each dealt into 3 and 7 partitions by message."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.analysis import attempt_figures, partitions, summary
from loadtest.analysis.loaded import RunDir
from tests.unit.test_analysis_unchanged import run_dir  # noqa: F401 (a fixture)
from tests.unit.test_compact_load import MAKE, drill  # noqa: F401 (a fixture)


def split_summary(path: Path, parts: int) -> tuple[str, list[int]]:
    """summary.json's text of the run read in `parts` partitions, and each one's size."""
    split = partitions.split(path, parts)
    assert split is not None
    with split:
        run = RunDir.load(path, split=split)
        assert run.journals.attempts.empty  # nothing read whole
        sizes = [len(run.share(part).journals.attempts) for part in range(run.share_count)]
        return summary.as_json(summary.summarise(run)), sizes


@pytest.mark.parametrize("parts", [3, 7])
def test_the_synthetic_runs_summary_is_the_same_a_partition_at_a_time(
    run_dir: Path,  # noqa: F811
    parts: int,
) -> None:
    whole = RunDir.load(run_dir)
    expected = summary.as_json(summary.summarise(whole))
    made, sizes = split_summary(run_dir, parts)
    assert len(sizes) == parts
    assert sum(sizes) == len(whole.journals.attempts)
    assert max(sizes) < len(whole.journals.attempts) / 2  # each a share, not the run
    assert made == expected
    figures = attempt_figures.of(whole, attempt_figures.run_attempts(whole.journals))
    assert figures.backlog.peak > 0
    assert figures.throughput.min_rolling_msgs_per_s is not None


@pytest.mark.parametrize("case", ["clean", "damaged", "escaped"])
@pytest.mark.parametrize("parts", [3, 7])
def test_a_drills_summary_is_the_same_a_partition_at_a_time(
    drill: Path,  # noqa: F811
    tmp_path: Path,
    case: str,
    parts: int,
) -> None:
    run = MAKE[case](drill, tmp_path)
    expected = summary.as_json(summary.summarise(RunDir.load(run)))
    made, _ = split_summary(run, parts)
    assert made == expected


def test_a_report_of_a_run_too_big_to_hold_whole_is_the_same(
    run_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`maildrill report`'s outputs (summary.json, series, report.md and .html, plots) of
    the synthetic run dealt into partitions, as `summary.write` deals a big run, are those
    of the run held whole; the scratch directory is gone after."""
    outputs = ("summary.json", "series", "plots", "report.md", "report.html")
    whole = tmp_path / "whole"
    split = tmp_path / "split"
    for target in (whole, split):
        target.mkdir()
        for path in run_dir.iterdir():
            if path.is_file() and path.name not in outputs:
                (target / path.name).write_bytes(path.read_bytes())
    summary.write(whole)
    made: list[partitions.Split] = []
    real = partitions.split

    def spy(path: Path, parts: int | None = None) -> partitions.Split | None:
        made.append(done := real(path, parts))  # type: ignore[arg-type]
        return done

    monkeypatch.setattr(partitions, "PART_BYTES", 1_000_000)  # 30,000 attempts: 6 MB
    monkeypatch.setattr(partitions, "split", spy)
    summary.write(split)
    assert made
    assert made[0] is not None
    assert made[0].parts > 3
    assert made[0].directory.parent == split  # beside the journals, not in memory-backed /tmp
    assert not made[0].directory.exists()
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert {str(f).split("/")[0] for f in files} >= set(outputs)
    for name in files:
        assert (split / name).read_bytes() == (whole / name).read_bytes(), name


@pytest.mark.parametrize("parts", [1, 4])
def test_a_run_that_ended_early_has_its_streams_planned_from_the_plan(
    run_dir: Path,  # noqa: F811
    tmp_path: Path,
    parts: int,
) -> None:
    """run.json plans more messages than the journals name (the run was cut short): each
    stream's planned count is filled in from the campaign's plan, the same held whole or a
    partition at a time."""
    import json

    cut = tmp_path / "cut"
    cut.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (cut / path.name).write_bytes(path.read_bytes())
    record = json.loads((cut / "run.json").read_text())
    record["planned"] = int(record["planned"]) + 500
    (cut / "run.json").write_text(json.dumps(record))
    whole = summary.summarise(RunDir.load(cut))
    assert whole.messages.not_sent == 500
    assert sum(s.planned for s in whole.streams.values()) == whole.messages.planned
    if parts == 1:
        return
    made, _ = split_summary(cut, parts)
    assert made == summary.as_json(whole)


def test_a_run_of_messages_none_sent_starts_where_it_does_held_whole(tmp_path: Path) -> None:
    """Without run.json's t0, a run whose every row is a message not sent (all its
    recipients suppressed) starts at its first journaled row, the same held whole or a
    partition at a time (the first receipt is only in the partitions)."""
    import json

    from loadtest.suppression import SUPPRESSED
    from tests.runs import DRILL_HARNESS, DRILL_SCENARIO, T0, RunBuilder

    build = RunBuilder("nosend")
    for k in range(40):
        build.attempt(
            k, "", 0.1 * k, 0.1 * k, 0.1 * k, outcome=SUPPRESSED, code=None, phase="", enhanced=""
        )
    build.receipt(7, "primary", at=5.0)
    build.receipt(3, "primary", at=2.5)
    build.fault("primary", "down", "start", at=4.0)
    path = build.write(tmp_path / "run", DRILL_SCENARIO, 40, DRILL_HARNESS)
    record = json.loads((path / "run.json").read_text())
    del record["t0"]
    (path / "run.json").write_text(json.dumps(record))
    whole = RunDir.load(path)
    assert whole.t0 == T0 + 2.5  # the first receipt, before the fault's start
    split = partitions.split(path, 3)
    assert split is not None
    with split:
        run = RunDir.load(path, split=split)
        assert run.t0 == whole.t0
        assert summary.as_json(summary.summarise(run)) == summary.as_json(summary.summarise(whole))


@pytest.mark.parametrize("missing", ["scenario.yaml", "run.json"])
def test_a_big_run_that_will_be_refused_is_refused_before_it_is_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """A finished run without the files it began with is refused from its small files:
    no journal is dealt into partitions first."""
    from loadtest.analysis.rundir import RunDirError
    from tests import runs

    path = runs.drill(tmp_path / "run")
    (path / missing).unlink()

    def no_split(path: Path, parts: int | None = None) -> partitions.Split | None:
        raise AssertionError("split before the checks")

    monkeypatch.setattr(partitions, "split", no_split)
    with pytest.raises(RunDirError, match=r"yet harness\.json says a run was here") as refused:
        summary.write(path)
    assert refused.value.path == path / missing
