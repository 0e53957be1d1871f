"""Names that become file names stay file names; every file stays in its output directory;
the Markdown report prints user text as text.

The commands run as a user would run them (`python -m loadtest.cli ...` in a scratch
working directory, where the default `reports/` is made), with hostile scenario files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.analysis import render_md, report, view
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Summary
from loadtest.cli import main
from maildrill.paths import UnsafePath, inside, is_safe_name
from tests import runs
from tests.helpers import REPO

HOSTILE_NAMES = [
    "../escaped",
    "../../escaped",
    "a/../../escaped",
    "/tmp/maildrill-absolute-escaped",
    "..",
    ".",
    ".hidden",
    "",
    "with space",
    "%Y%m-strftime",
    "line\nbreak",
    "nul\0byte",
    "x" * 65,
    "back\\slash",
]


def maildrill(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """`maildrill validate PATH` in this process: a real one costs seconds a name, and the
    run, sinks and first validate tests here keep real processes for what only they show."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return subprocess.CompletedProcess(
        ["validate", str(path)], code, out.getvalue(), err.getvalue()
    )


def scenario(name: str, **server: Any) -> dict[str, Any]:
    return {
        "name": name,
        "servers": [{"name": "mx", "local": True, **server}],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 2}], "drain_s": 0},
        "probe_interval_ms": 0,
    }


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def assert_refused(done: subprocess.CompletedProcess[str], field: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert field in lines[0], lines[0]


# -- names refused at validation ------------------------------------------------------


def test_validate_refuses_a_hostile_name_from_a_real_process(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    done = maildrill(work, "validate", str(write(tmp_path, scenario(HOSTILE_NAMES[0]))))
    assert_refused(done, "name")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_validate_refuses_a_scenario_name_that_is_not_a_file_name(tmp_path, name):
    assert_refused(validate(write(tmp_path, scenario(name))), "name")


@pytest.mark.parametrize("command", ["run", "sinks"])
@pytest.mark.parametrize("name", ["../escaped", str(Path("/tmp") / "maildrill-escaped-abs")])
def test_run_and_sinks_refuse_an_escaping_name_and_write_nothing(tmp_path, command, name):
    """Without --out the run directory is reports/NAME-TIME: a name with `..` or an
    absolute one put it outside reports/. Refused before anything is made."""
    work = tmp_path / "work"
    work.mkdir()
    path = write(tmp_path, scenario(name))
    before = all_files(tmp_path)
    escaped = sorted(Path("/tmp").glob("maildrill-escaped-abs*"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", command, str(path)],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # today's code: it started; stop it, by its own pid
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    try:
        assert_refused(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "name")
        assert all_files(tmp_path) == before, "nothing written anywhere"
        assert sorted(Path("/tmp").glob("maildrill-escaped-abs*")) == escaped
    finally:
        for made in set(Path("/tmp").glob("maildrill-escaped-abs*")) - set(escaped):
            shutil.rmtree(made)  # what today's code made: ours only, by its unique name


@pytest.mark.parametrize("hostname", ["../../escaped-host", "mx\r\n250 injected", "a/b", "-x"])
def test_a_sink_hostname_is_a_host_name_not_a_path_or_a_reply(tmp_path, hostname):
    """The banner name names the self-signed certificate's file and goes out in every
    greeting: `../..` wrote the certificate and key outside the journal directory, and a
    line break would add a reply line of the user's choosing."""
    config = tmp_path / "sinks.yaml"
    config.write_text(
        json.dumps({"sinks": [{"name": "mx", "hostname": hostname, "starttls": True}]})
    )
    journals = tmp_path / "deep" / "er" / "journals"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sinks", str(config), "--out", str(journals)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:  # today's code: it started; stop it, by its own pid
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        pytest.fail(f"a sink with hostname {hostname!r} started: {out[:200]}")
    assert proc.returncode == 2, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert "hostname" in err, err
    assert not list(tmp_path.rglob("*.crt")), "no certificate written anywhere"

    done = validate(write(tmp_path, scenario("ok", sink={"hostname": hostname})))
    assert_refused(done, "hostname")


def test_good_names_still_validate(tmp_path):
    for name in ("default", "peak-load", "run_2.1", "A" * 64):
        done = validate(write(tmp_path, scenario(name)))
        assert done.returncode == 0, done.stderr


def test_inside_refuses_any_part_that_is_not_a_plain_name(tmp_path):
    assert inside(tmp_path, "logs", "mx.log") == tmp_path / "logs" / "mx.log"
    for part in ("..", ".", "", "a/b", "/etc", "a\\b", "nul\0"):
        with pytest.raises(UnsafePath):
            inside(tmp_path, part)
    assert [n for n in HOSTILE_NAMES if is_safe_name(n)] == []


# -- the Markdown report prints user text as text -------------------------------------

HOSTILE_TEXT = (
    "a|b `code` <script>alert(1)</script> [x](javascript:alert(1)) ![i](http://x.test/i.png) "
    "*em* _u_ ~~s~~ &lt; <https://x.test> \\| end\n# heading\r\n| fake | row |"
)


# A scenario as run whose description holds a code fence of its own.
SCENARIO_TEXT = "name: x\ndescription: |\n  ````\n  # not a heading\n  ```\nusers: 1\n"


def unescaped(text: str, chars: str) -> list[str]:
    """The characters of `chars` in `text` that no backslash escapes."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in chars:
            found.append(text[i])
        i += 1
    return found


def unescape(cell: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", cell)


def hostile_summary(summary: dict[str, Any]) -> dict[str, Any]:
    doctored = copy.deepcopy(summary)
    doctored["scenario"] = HOSTILE_TEXT
    doctored["run_id"] = HOSTILE_TEXT
    per_server = doctored["throughput"]["per_server"]
    per_server[HOSTILE_TEXT] = next(iter(per_server.values()))
    doctored["errors"] = {HOSTILE_TEXT: 3}
    doctored["failovers"][0]["target"] = HOSTILE_TEXT
    doctored["slo"]["checks"][0]["note"] = HOSTILE_TEXT
    doctored["preflight"] = {"ok": False, "reference": "mx", "flags": [{"message": HOSTILE_TEXT}]}
    doctored["harness"]["events"].append({"time": 1.0, "event": "fault_sent",
                                          "status": f"failed: {HOSTILE_TEXT}"})  # fmt: skip
    doctored["brand_new"] = {HOSTILE_TEXT: HOSTILE_TEXT}
    return doctored


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[str, str]:
    run_dir = runs.drill(tmp_path_factory.mktemp("hostile") / "run")
    summary = hostile_summary(summary_mod.write(run_dir).model_dump(mode="json"))
    out = tmp_path_factory.mktemp("hostile-out")
    run = dataclasses.replace(RunDir.load(run_dir), scenario_text=SCENARIO_TEXT)
    report.write(out, Summary.model_validate(summary), run)
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_markdown_tables_keep_their_shape_whatever_the_text(hostile_report):
    md, _ = hostile_report
    in_table, width = False, 0
    for line in md.splitlines():
        if line.startswith("| "):
            cells = len(unescaped(line, "|"))
            if not in_table:
                in_table, width = True, cells
            assert cells == width, line
        else:
            in_table = False
    assert not any(line.startswith(("# heading", "| fake")) for line in md.splitlines())


def test_markdown_has_no_markup_from_user_text(hostile_report):
    md, _ = hostile_report
    # The lines that print user text: the title, the facts line, the tables.
    body = "\n".join(
        line for line in md.partition("## Plots")[0].splitlines()
        if line.startswith(("# ", "scenario: ", "| "))
    )  # fmt: skip
    assert "# maildrill report: a\\|b" in body
    # Code, links, images, emphasis, strike-through, entities: every opener escaped.
    assert unescaped(body, "`[]*~&") == []
    assert re.search(r"(?<!\\)<[A-Za-z/!?]", body) is None, "raw HTML or an autolink"
    assert "_u_" not in body
    # What a reader sees is the text itself, line breaks as spaces.
    flat = HOSTILE_TEXT.replace("\r\n", " ").replace("\n", " ")
    assert f"| {render_md.cell(flat)} | 3 |" in body
    assert unescape(render_md.cell(flat)) == flat


def test_the_scenario_fence_outlasts_any_backticks_in_it(hostile_report):
    md, _ = hostile_report
    text = SCENARIO_TEXT.rstrip("\n")
    longest = max(len(run) for run in re.findall(r"`+", text))
    fence = "`" * (longest + 1)
    assert f"\n{fence}yaml\n{text}\n{fence}\n" in md


def test_html_escapes_the_same_text(hostile_report):
    _, html = hostile_report
    assert "<script" not in html
    assert "javascript:alert(1))" in html  # as text, in a cell
    assert 'href="javascript' not in html
    assert "&lt;script&gt;" in html
    assert "<h1>maildrill report: a|b" in html


def test_the_view_title_is_escaped_in_markdown():
    page = view.build(Summary.model_validate(hostile_summary(json.loads(json.dumps(MINIMAL)))))
    first = render_md.render(page).splitlines()[0]
    assert first.startswith("# maildrill report: a\\|b \\`code\\`")
    assert "\n" not in first


# The keys summary.json has always had (the others have defaults).
MINIMAL: dict[str, Any] = {
    "scenario": "x",
    "started_at": 0.0,
    "duration_s": 1.0,
    "partial": False,
    "messages": {"planned": 1, "attempted": 1, "accepted": 1, "failed": 0,
                 "received_unique": 1, "lost": 0, "duplicates": 0, "phantom": 0,
                 "stranded": 0},
    "throughput": {"per_server": {"mx": {"accepted": 1, "mean_msgs_per_s": 1.0}},
                   "mean_msgs_per_s": 1.0, "peak_msgs_per_s": 1.0},
    "latency_ms": {"p50": 1.0},
    "errors": {},
    "failovers": [{"target": "mx", "kind": "down", "onset_s": 1.0, "cleared_s": None,
                   "detection_s": None, "failover_s": None, "failback_s": None,
                   "recovery_s": None, "messages_delayed": 0, "messages_failed": 0}],
    "journal_problems": {"skipped_lines": {}},
    "slo": {"passed": True, "checks": [{"name": "lost", "rule": "lost == 0", "limit": 0,
                                        "value": 0, "passed": True}]},
    "harness": {"events": []},
}  # fmt: skip
