"""Damaged run directories, made from a real run: `maildrill report` and `maildrill compare`
name the file (and the line) in one line on stderr and exit 2, or, for a few unreadable
lines in a journal, count and name them on stdout and keep the verdict from passing on them.
Never a traceback, never exit 1 for input the analysis cannot use."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest import cli
from tests.helpers import SHORT_DEFAULT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short default drill (real sinks, Locust, a `down` fault), analysed as it ends."""
    run_dir = tmp_path_factory.mktemp("real") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         *SHORT_DEFAULT],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert (run_dir / "summary.json").exists(), proc.stderr
    return run_dir


@pytest.fixture
def run_copy(real_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(real_run, copy)
    return copy


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def biggest_receipts(run_dir: Path) -> Path:
    return max(run_dir.glob("receipts-*.csv"), key=lambda p: p.stat().st_size)


def edit_header(path: Path, old: str, new: str) -> None:
    header, rest = path.read_text().split("\n", 1)
    assert old in header.split(",")
    columns = [new if c == old else c for c in header.split(",")]
    path.write_text(",".join(columns) + "\n" + rest)


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


Damage = Callable[[Path], object]

# (what is damaged, how, the file the one line on stderr must name)
# fmt: off
FATAL: dict[str, tuple[Damage, str]] = {
    "attempts missing": (lambda d: (d / "attempts.csv").unlink(), "attempts.csv"),
    "attempts empty": (lambda d: (d / "attempts.csv").write_bytes(b""), "attempts.csv"),
    "attempts random bytes": (
        lambda d: (d / "attempts.csv").write_bytes(noise(4000, 1)), "attempts.csv"),
    "attempts header with a column twice": (
        lambda d: edit_header(d / "attempts.csv", "stream", "msg_id"), "attempts.csv"),
    "attempts header without outcome": (
        lambda d: edit_header(d / "attempts.csv", "outcome", "result"), "attempts.csv"),
    "attempts in UTF-16": (
        lambda d: (d / "attempts.csv").write_bytes(
            (d / "attempts.csv").read_text().encode("utf-16")), "attempts.csv"),
    "attempts a directory": (
        lambda d: ((d / "attempts.csv").unlink(), (d / "attempts.csv").mkdir()), "attempts.csv"),
    "receipts random bytes": (
        lambda d: biggest_receipts(d).write_bytes(noise(3000, 2)), "receipts-"),
    "receipts header with a column twice": (
        lambda d: edit_header(biggest_receipts(d), "message_id", "msg_id"), "receipts-"),
    "receipts empty": (lambda d: biggest_receipts(d).write_bytes(b""), "receipts-"),
    "receipts deleted since the run": (lambda d: biggest_receipts(d).unlink(), "receipts-"),
    "faults random bytes": (
        lambda d: (d / "faults-primary.csv").write_bytes(noise(500, 3)), "faults-primary.csv"),
    "probes header with a column twice": (
        lambda d: edit_header(d / "probes.csv", "phase", "server"), "probes.csv"),
    "run.json truncated": (lambda d: truncate(d / "run.json"), "run.json"),
    "run.json t0 a string": (lambda d: edit_json(d / "run.json", t0="soon"), "run.json"),
    "run.json planned a string": (
        lambda d: edit_json(d / "run.json", planned="75 messages"), "run.json"),
    "run.json a list": (lambda d: (d / "run.json").write_text("[1, 2]"), "run.json"),
    "run.json t0 NaN": (lambda d: (d / "run.json").write_text('{"t0": NaN}'), "run.json"),
    "harness.json truncated": (lambda d: truncate(d / "harness.json"), "harness.json"),
    "harness.json events a number": (
        lambda d: edit_json(d / "harness.json", events=5), "harness.json"),
    "harness.json sink_deaths of strings": (
        lambda d: edit_json(d / "harness.json", sink_deaths=["primary"]), "harness.json"),
    "scenario.yaml corrupt": (
        lambda d: (d / "scenario.yaml").write_text("name: [unclosed\n  servers: {"),
        "scenario.yaml"),
    "scenario.yaml random bytes": (
        lambda d: (d / "scenario.yaml").write_bytes(noise(2000, 4)), "scenario.yaml"),
    "preflight.json truncated": (lambda d: truncate(d / "preflight.json"), "preflight.json"),
    "preflight.json flags of numbers": (
        lambda d: edit_json(d / "preflight.json", flags=[1, 2]), "preflight.json"),
}
# fmt: on


def report(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["report", str(run_dir)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", sorted(FATAL))
def test_damage_the_analysis_cannot_survive_is_one_line_and_exit_2(
    run_copy: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, named = FATAL[case]
    damage(run_copy)
    code, out, err = report(run_copy, capsys)
    lines = err.splitlines()
    assert code == cli.EXIT_BAD_INPUT, (case, out, err)
    assert len(lines) == 1, (case, err)
    assert named in lines[0], (case, lines[0])
    assert "Traceback" not in out + err


def test_a_damaged_run_from_a_real_process_is_one_line_and_no_traceback(
    run_copy: Path, tmp_path: Path, real_run: Path
) -> None:
    """The same through the installed entry point, and `compare` on a damaged run too."""
    (run_copy / "summary.json").unlink()
    (run_copy / "attempts.csv").write_bytes(noise(4000, 5))
    for args in (["report", str(run_copy)], ["compare", str(real_run), str(run_copy),
                                             "--out", str(tmp_path / "c.md")]):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "loadtest.cli", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "attempts.csv" in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "summary",
    ["{truncated", "[1, 2]", '{"messages": [], "failovers": {"a": 1}}', '{"failovers": [1]}'],
)
def test_compare_names_a_damaged_summary(
    run_copy: Path, real_run: Path, tmp_path: Path, summary: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (run_copy / "summary.json").write_text(summary)
    code = cli.main(["compare", str(real_run), str(run_copy), "--out", str(tmp_path / "c.md")])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT, (out, err)
    assert len(err.splitlines()) == 1, err
    assert "summary.json" in err


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def replace_lines(path: Path, at: list[int], line: bytes) -> None:
    rows = lines_of(path)
    for i in at:
        rows[i] = line
    path.write_bytes(b"".join(rows))


# (what is damaged, how: returns the damaged file's name and how many lines it spoiled)
def receipts_garbage(d: Path) -> tuple[str, int]:
    path = biggest_receipts(d)
    replace_lines(path, [2, 3, 4], b"\x00garbage,\xff\xfe not a receipt\n")
    return path.name, 3


def receipts_bad_utf8(d: Path) -> tuple[str, int]:
    path = biggest_receipts(d)
    rows = lines_of(path)
    rows[2] = rows[2].replace(b"maildrill", b"mail\xffdrill", 1)
    path.write_bytes(b"".join(rows))
    return path.name, 1


def receipts_unclosed_quote(d: Path) -> tuple[str, int]:
    """A stray quote swallows the lines after it into one field: each of them is counted."""
    path = biggest_receipts(d)
    rows = lines_of(path)
    rows[-3] = b'"' + rows[-3]
    path.write_bytes(b"".join(rows))
    return path.name, 3


def receipts_bad_time(d: Path) -> tuple[str, int]:
    path = biggest_receipts(d)
    rows = lines_of(path)
    rows[5] = b"yesterday" + rows[5][rows[5].index(b",") :]
    path.write_bytes(b"".join(rows))
    return path.name, 1


def attempts_short_line(d: Path) -> tuple[str, int]:
    path = d / "attempts.csv"
    rows = lines_of(path)
    rows[7] = rows[7].split(b",", 3)[0] + b"\n"
    path.write_bytes(b"".join(rows))
    return path.name, 1


UNREADABLE = {
    "receipts garbage lines": receipts_garbage,
    "receipts invalid UTF-8": receipts_bad_utf8,
    "receipts unclosed quote": receipts_unclosed_quote,
    "receipts time not a number": receipts_bad_time,
    "attempts short line": attempts_short_line,
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_lines_are_counted_named_and_no_count_slo_passes_on_them(
    run_copy: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, spoiled = UNREADABLE[case](run_copy)
    code, out, err = report(run_copy, capsys)
    assert "Traceback" not in out + err
    assert err == "", err
    summary = json.loads((run_copy / "summary.json").read_text())
    problems = summary["journal_problems"]
    assert problems["skipped_lines"] == {name: spoiled}, problems
    assert problems["unreadable_lines"][name]["lines"] == spoiled
    # Named on stdout, with the count: "lost 3" cannot be read as three messages lost.
    (line,) = [x for x in out.splitlines() if x.startswith(f"journal {name}:")]
    assert f"{spoiled} unreadable line" in line
    lost = next(c for c in summary["slo"]["checks"] if c["name"] == "lost")
    assert not lost["passed"]
    assert name in lost["note"]
    assert f"FAIL  {lost['rule']}" in out
    assert code == cli.EXIT_SLO_FAILED


def torn_receipt(run_dir: Path) -> str:
    path = biggest_receipts(run_dir)
    with path.open("ab") as f:
        f.write(b"1800000000.0,secondary,0,secondary.9,127.0")
    return path.name


def test_a_torn_last_line_after_a_sink_died_is_trusted_to_be_unacknowledged(
    run_copy: Path, real_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sink journals a message before its 250: a line cut as it died was never
    acknowledged, so it is left out and named, and the verdict is the intact run's."""
    name = torn_receipt(run_copy)
    death = {"sink": "secondary", "at_s": 1.0, "exit_code": -9, "event": "sink_died"}
    edit_json(run_copy / "harness.json", sink_deaths=[death])
    code, out, err = report(run_copy, capsys)
    assert err == ""
    summary = json.loads((run_copy / "summary.json").read_text())
    intact = json.loads((real_run / "summary.json").read_text())
    problems = summary["journal_problems"]
    assert problems["skipped_lines"] == {name: 1}
    assert problems["torn_last_line"] == [name]
    assert problems["torn_last_line_trusted"] is True
    assert summary["slo"] == intact["slo"]
    assert summary["messages"] == intact["messages"]
    (line,) = [x for x in out.splitlines() if x.startswith(f"journal {name}:")]
    assert "torn" in line
    assert "unverified" not in line
    assert code == (cli.EXIT_OK if intact["slo"]["passed"] else cli.EXIT_SLO_FAILED)


def test_a_torn_last_line_in_a_run_that_finished_cleanly_is_a_file_cut_short(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every journal of a cleanly finished run was closed whole: a torn line there means
    the lines after it are gone, so the counts from that journal are unverified."""
    name = torn_receipt(run_copy)
    code, out, err = report(run_copy, capsys)
    assert err == ""
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["journal_problems"]["torn_last_line_trusted"] is False
    lost = next(c for c in summary["slo"]["checks"] if c["name"] == "lost")
    assert not lost["passed"]
    assert name in lost["note"]
    (line,) = [x for x in out.splitlines() if x.startswith(f"journal {name}:")]
    assert "cut short" in line
    assert code == cli.EXIT_SLO_FAILED


def test_an_honest_run_has_no_journal_problems_and_its_record(
    run_copy: Path, real_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guard against false alarms: an untouched run reads whole, with the same
    verdict, and harness.json holds every journal's size and lines as they are."""
    harness = json.loads((run_copy / "harness.json").read_text())
    for name, recorded in harness["journals"].items():
        data = (run_copy / name).read_bytes()
        assert recorded == {"bytes": len(data), "lines": data.count(b"\n")}, name
    assert "attempts.csv" in harness["journals"]
    code, out, err = report(run_copy, capsys)
    summary = json.loads((run_copy / "summary.json").read_text())
    problems = summary["journal_problems"]
    assert problems["skipped_lines"] == {}, problems
    assert problems["missing_lines"] == {}, problems
    assert "unverified" not in out
    assert err == ""
    intact = json.loads((real_run / "summary.json").read_text())
    assert code == (cli.EXIT_OK if intact["slo"]["passed"] else cli.EXIT_SLO_FAILED)


@pytest.mark.parametrize("journal", ["attempts", "receipts"])
def test_a_journal_cut_at_a_line_boundary_is_named_and_passes_nothing(
    run_copy: Path, journal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whole lines cut off the end leave no torn line: without the record in harness.json
    five lost receipts would read as five messages lost, five lost attempts as not sent."""
    path = run_copy / "attempts.csv" if journal == "attempts" else biggest_receipts(run_copy)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-5]))
    code, out, err = report(run_copy, capsys)
    assert err == ""
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["journal_problems"]["missing_lines"] == {
        path.name: {"kind": journal, "lines": 5}
    }
    lost = next(c for c in summary["slo"]["checks"] if c["name"] == "lost")
    assert not lost["passed"]
    assert path.name in lost["note"]
    (line,) = [x for x in out.splitlines() if x.startswith(f"journal {path.name}:")]
    assert "5 lines shorter" in line
    assert "cut short" in line
    assert code == cli.EXIT_SLO_FAILED
