"""`--junit FILE`: the run's verdict as JUnit XML, read back with xml.etree the way a CI
system reads it: one case per SLO check and per journal problem, failures where they
failed, counted against the summary and against the damage done to the journals."""

from __future__ import annotations

import copy
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadtest.analysis import junit
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.summary_model import Summary
from loadtest.analysis.view import exact
from loadtest.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SLO_FAILED, main
from tests import runs


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> tuple[Path, Summary]:
    run_dir = runs.drill(tmp_path_factory.mktemp("drill") / "run")
    return run_dir, summary_mod.write(run_dir, reports=False)


def parsed(text: str) -> ET.Element:
    """The one suite, after checking the file parses and its counts add up."""
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    failed = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    for node in (root, suite):
        assert int(node.get("tests", "")) == len(cases)
        assert (int(node.get("failures", "")), int(node.get("skipped", ""))) == (failed, skipped)
        assert node.get("errors") == "0"
    return suite


def by_group(suite: ET.Element, group: str) -> list[ET.Element]:
    return [c for c in suite.findall("testcase") if c.get("classname", "").endswith(f".{group}")]


def test_one_case_per_slo_check_failed_where_it_failed(drill):
    _, summary = drill
    suite = parsed(junit.render(summary))
    assert suite.get("name") == "hand-drill"
    assert suite.get("time") == "9.760"  # the run's duration
    assert suite.get("timestamp") == "2027-01-15T08:00:00"  # t0 (runs.T0), UTC
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"run_id": "hand-drill", "partial": "false"}
    cases = by_group(suite, "slo")
    checks = summary.slo.checks
    assert [c.get("name") for c in cases] == [c.rule for c in checks]
    assert [c.get("classname") for c in cases] == ["hand-drill.slo"] * len(checks)
    for case, check in zip(cases, checks, strict=True):
        failure = case.find("failure")
        assert (failure is None) == check.passed, check.rule
        if failure is None:
            assert f"measured: {exact(check.value)}" in case.findtext("system-out", "")
            continue
        message = failure.get("message", "")
        assert message.startswith(f"measured {exact(check.value)}, limit {exact(check.limit)}")
        assert check.note in message
        assert failure.get("type") == "SLO"
        assert f"limit: {exact(check.limit)}" in (failure.text or "")
    # The hand-built drill's known answers: only failover_s <= 1 passes.
    passed = [c.get("name") for c in cases if c.find("failure") is None]
    assert passed == ["failover_s <= 1"]


def test_a_value_just_over_its_limit_does_not_read_as_the_limit(drill):
    _, summary = drill
    close = copy.deepcopy(summary)
    check = next(c for c in close.slo.checks if c.name == "failover_s")
    check.value, check.passed = 1.0004, False
    suite = parsed(junit.render(close))
    (case,) = [c for c in by_group(suite, "slo") if c.get("name") == check.rule]
    assert case.find("failure").get("message") == "measured 1.0004, limit 1"


def test_the_journal_problem_of_the_drill_is_one_failed_case(drill):
    """runs.drill cuts receipts-secondary.csv mid-line in a run that finished cleanly."""
    _, summary = drill
    suite = parsed(junit.render(summary))
    (case,) = by_group(suite, "journals")
    assert case.get("name") == "receipts-secondary.csv: torn last line"
    assert "cut short" in case.find("failure").get("message")
    (run,) = by_group(suite, "run")
    assert run.get("name") == junit.RAN_AS_WRITTEN
    assert list(run) == []  # passed


def test_a_damaged_journal_gives_a_failed_case_per_problem(tmp_path):
    """Three lines of receipts-primary.csv spoiled, the last two of attempts.csv cut after
    harness.json recorded them: two problems, two failed cases, with those counts."""
    run_dir = runs.drill(tmp_path / "run")
    receipts = run_dir / "receipts-primary.csv"
    rows = receipts.read_bytes().splitlines(keepends=True)
    for i in (2, 3, 4):
        rows[i] = b"\x00garbage,\xff\xfe not a receipt\n"
    receipts.write_bytes(b"".join(rows))
    attempts = run_dir / "attempts.csv"
    whole = attempts.read_bytes()
    harness = json.loads((run_dir / "harness.json").read_text())
    harness["journals"] = {"attempts.csv": {"bytes": len(whole), "lines": whole.count(b"\n")}}
    (run_dir / "harness.json").write_text(json.dumps(harness))
    attempts.write_bytes(b"".join(whole.splitlines(keepends=True)[:-2]))

    summary = summary_mod.write(run_dir, reports=False)
    problems = summary.journal_problems
    assert problems.unreadable_lines["receipts-primary.csv"].lines == 3
    assert problems.missing_lines["attempts.csv"].lines == 2
    suite = parsed(junit.render(summary))
    failures = {
        c.get("name"): c.find("failure").get("message", "") for c in by_group(suite, "journals")
    }
    assert set(failures) == {
        "receipts-primary.csv: unreadable lines",
        "attempts.csv: missing lines",
        "receipts-secondary.csv: torn last line",
    }
    assert failures["receipts-primary.csv: unreadable lines"].startswith(
        "3 unreadable lines (line 3, 4, 5)"
    )
    assert failures["attempts.csv: missing lines"].startswith("2 lines shorter")
    # No SLO counted from those journals passes (the summary's verdict, case by case).
    for case, check in zip(by_group(suite, "slo"), summary.slo.checks, strict=True):
        assert (case.find("failure") is None) == check.passed


def test_a_run_without_problems_passes_every_case(tmp_path):
    scenario = runs.STEP_SCENARIO.replace("p95_latency_ms <= 250", "p95_latency_ms <= 500")
    run_dir = runs.steps(tmp_path / "run", scenario)
    out = tmp_path / "ci" / "junit.xml"  # a directory that is not there yet is made
    assert main(["report", str(run_dir), "--junit", str(out)]) == EXIT_OK
    suite = parsed(out.read_text(encoding="utf-8"))
    names = [(c.get("classname"), c.get("name")) for c in suite.findall("testcase")]
    assert names == [
        ("hand-steps.slo", "p95_latency_ms <= 500"),
        ("hand-steps.journals", junit.JOURNALS_WHOLE),
        ("hand-steps.run", junit.RAN_AS_WRITTEN),
    ]
    assert suite.get("failures") == "0"
    assert not list(out.parent.glob("*.part"))


def test_a_fault_that_did_not_start_skips_the_slos_and_fails_the_run(drill):
    _, summary = drill
    aborted = copy.deepcopy(summary)
    aborted.harness.aborted_by = 'fault down on primary refused: 400 <bad> & "worse"'
    suite = parsed(junit.render(aborted))
    slo = by_group(suite, "slo")
    assert len(slo) == len(summary.slo.checks)
    assert all(c.find("skipped") is not None for c in slo)
    (run,) = by_group(suite, "run")
    failure = run.find("failure")
    assert failure.get("message") == f"a fault did not start: {aborted.harness.aborted_by}"
    assert failure.get("type") == "aborted"


def test_an_interrupted_run_fails_its_run_case(drill):
    _, summary = drill
    partial = copy.deepcopy(summary)
    partial.partial = True
    partial.harness.interrupted_by = "SIGINT"
    suite = parsed(junit.render(partial))
    (run,) = by_group(suite, "run")
    assert run.find("failure").get("type") == "partial"
    assert "interrupted by SIGINT" in run.find("failure").get("message")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["partial"] == "true"
    assert props["interrupted_by"] == "SIGINT"


ODD = "odd <name> & \"quotes\" 'too' \x00\x01\x1b[31m\x7f \ud800 é ✓ 𝄞 ]]>"


def test_odd_characters_in_names_still_make_valid_xml(drill):
    _, summary = drill
    odd = copy.deepcopy(summary)
    odd.scenario = ODD
    odd.run_id = ODD
    odd.journal_problems.torn_last_line = [ODD]
    text = junit.render(odd)
    suite = parsed(text)
    shown = "odd <name> & \"quotes\" 'too' #x00#x01#x1B[31m#x7F #xD800 é ✓ 𝄞 ]]>"
    assert suite.get("name") == shown
    assert {c.get("classname") for c in suite.findall("testcase")} == {
        f"{shown}.slo",
        f"{shown}.journals",
        f"{shown}.run",
    }
    assert f"{shown}: torn last line" in [c.get("name") for c in by_group(suite, "journals")]
    text.encode("utf-8")  # no lone surrogate left to encode


def test_report_writes_the_junit_file_and_keeps_its_exit_code(drill, tmp_path, capsys):
    run_dir, summary = drill
    out = tmp_path / "junit.xml"
    out.write_text("an older file")  # replaced whole
    assert main(["report", str(run_dir), "--junit", str(out)]) == EXIT_SLO_FAILED
    suite = parsed(out.read_text(encoding="utf-8"))
    assert len(by_group(suite, "slo")) == len(summary.slo.checks)


@pytest.mark.parametrize("command", ["report", "run"])
def test_an_unusable_junit_path_is_one_line_and_exit_2_before_anything(
    drill, tmp_path, capsys, command
):
    """Before the run starts (this tier refuses child processes: a run that started would
    fail the test) and before `report` writes anything."""
    run_dir, _ = drill
    target = tmp_path / "elsewhere.xml"
    link = tmp_path / "link.xml"
    link.symlink_to(target)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    paths = {
        link: "a symbolic link",
        tmp_path: "a directory",
        a_file / "junit.xml": "cannot write",
    }
    if os.geteuid() != 0:  # root writes anywhere
        paths[locked / "junit.xml"] = "cannot write"
    try:
        for path, why in paths.items():
            args = (
                ["report", str(run_dir)]
                if command == "report"
                else ["run", "default", "--out", str(tmp_path / "run")]
            )
            assert main([*args, "--junit", str(path)]) == EXIT_BAD_INPUT, path
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1, err
            assert why in err, err
    finally:
        locked.chmod(0o700)
    assert not target.exists()
    assert not (tmp_path / "run" / "harness.json").exists()
