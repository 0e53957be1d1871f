"""Hostile input, tried as a hostile user would: one line on stderr, exit 2, nothing lost.

Each case is a scenario, a sink config or a run directory that a careless or hostile user
could hand to maildrill. Whatever it is, the answer is the same shape: exactly one line on
stderr that names the problem, exit status 2 (never 1, which means "an SLO failed", never
0), no traceback, no load started, and no file written outside the chosen directory.

The commands run in-process (`loadtest.cli.main`), so an exception that escapes fails the
test with its own traceback; one case per command also runs as a real process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest import cli
from tests import runs

BASE: dict[str, Any] = {
    "name": "hostile",
    "servers": [
        {"name": "primary", "priority": 10, "local": True},
        {"name": "secondary", "priority": 20, "local": True},
    ],
    "routing": {"policy": "failover"},
    "campaign": {
        "seed": 1,
        "streams": [{"name": "promotional", "size_median": 2000, "size_sigma": 0.1}],
        "schedule": [{"duration_s": 2, "rate": 5}],
        "drain_s": 1,
    },
    "users": 2,
    "faults": [{"at": 1, "target": "primary", "kind": "down", "duration": 1}],
    "slo": ["lost == 0"],
}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to BASE at a dotted path (list indexes as numbers)."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def _postfix(settings: dict[str, Any] | None = None, **spec: Any) -> Callable[[dict], None]:
    """Make the primary a Postfix instance maildrill builds, relaying to a local sink."""

    def change(data: dict[str, Any]) -> None:
        data["servers"][0] = {
            "name": "primary",
            "priority": 10,
            "local": True,
            "postfix": {
                "relay": "downstream",
                **spec,
                **({"settings": settings} if settings else {}),
            },
        }
        data["servers"].append({"name": "downstream", "local": True})
        data["faults"] = []

    return change


# (case id, change to BASE). Every one must end in exit 2 with one line on stderr.
HOSTILE_SCENARIOS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    # 2. recipient and sender domains that quoting would cut to a real domain
    ("domain-angle-bracket", _set("campaign.streams.0.domains", {"gmail.com>.test": 1})),
    ("domain-comma", _set("campaign.streams.0.domains", {"yahoo.com,x.test": 1})),
    ("domain-space", _set("campaign.streams.0.domains", {"gmail.com .test": 1})),
    ("domain-crlf", _set("campaign.streams.0.domains", {"x.test\r\nRCPT TO:<a@gmail.com>": 1})),
    ("domain-at", _set("campaign.streams.0.domains", {"gmail.com@x.test": 1})),
    ("domain-real", _set("campaign.streams.0.domains", {"gmail.com": 1})),
    ("sender-angle", _set("campaign.streams.0.sender", "a@gmail.com>.test")),
    ("sender-crlf", _set("campaign.streams.0.sender", "a@shop.test\r\nRCPT TO:<v@gmail.com>")),
    ("allowed-domain-junk", _set("campaign.allowed_recipient_domains", ["gmail.com>"])),
    # 3. Postfix settings that would listen or relay off the machine, or inject lines
    ("postfix-relayhost", _postfix({"relayhost": "[smtp.gmail.com]:25"})),
    ("postfix-inet-all", _postfix({"inet_interfaces": "all"})),
    ("postfix-mynetworks", _postfix({"mynetworks": "0.0.0.0/0"})),
    ("postfix-value-newline", _postfix({"smtpd_banner": "x\nrelayhost = [8.8.8.8]"})),
    ("postfix-name-newline", _postfix({"smtpd_banner\nrelayhost": "[8.8.8.8]"})),
    ("postfix-hostname-newline", _postfix(hostname="mx.test\nrelayhost = [8.8.8.8]")),
    ("postfix-expansion", _postfix({"x": "tcp", "y": "192.0.2.1", "smtpd_banner": "${x}:${y}"})),
    ("postfix-per-site", _postfix({"lmtp_tls_per_site": "anything"})),
    # remote targets without allow_remote
    ("remote-server", _set("servers.1", {"name": "secondary", "host": "192.0.2.1", "port": 25})),
    (
        "remote-proxy-upstream",
        _set(
            "servers.0",
            {
                "name": "primary",
                "local": True,
                "sink": {"mode": "proxy", "upstream": {"host": "192.0.2.1", "port": 25}},
            },
        ),
    ),
    ("sink-hostname-crlf", _set("servers.0.sink", {"hostname": "mx.test\r\n250 ok"})),
    # 5. names that become file names
    ("name-dotdot", _set("name", "../escaped")),
    ("name-absolute", _set("name", "/tmp/maildrill-escaped")),
    ("name-slash", _set("name", "a/b")),
    ("server-name-dotdot", _set("servers.1.name", "..")),
    # 7. numbers that cannot run
    ("fault-duration-inf", _set("faults.0.duration", float("inf"))),
    ("fault-at-nan", _set("faults.0.at", float("nan"))),
    ("rate-inf", _set("campaign.schedule.0.rate", float("inf"))),
    ("duration-huge", _set("campaign.schedule.0.duration_s", 1e300)),
    ("users-huge", _set("users", 10**30)),
    ("size-huge", _set("campaign.streams.0.size_median", 1e15)),
    ("drain-nan", _set("campaign.drain_s", float("nan"))),
    ("retry-backoff-inf", _set("routing.retry", {"max_attempts": 3, "backoff_s": float("inf")})),
    ("throttle-rate-nan", _set("servers.0.sink", {"behaviours": [{"kind": "throttle",
                                                                  "rate": float("nan")}]})),
    ("size-sigma-huge", _set("campaign.streams.0.size_sigma", 1000)),
    ("slo-limit-400-digits", _set("slo", ["lost <= " + "9" * 400])),
    ("stage-messages-too-fast", _set("campaign.schedule.0", {"duration_s": 0.001,
                                                             "messages": 10_000_000})),
    # text printed to a terminal as it is
    ("description-bidi-override", _set("description", "drill \u202egnissap")),
    ("description-c1-escape", _set("description", "drill \u009b31m")),
    ("description-escape", _set("description", "drill \x1b[2J\x1b]0;owned\x07")),
    ("description-newline", _set("description", "drill\nSLOs PASSED")),
    # plain garbage
    ("unknown-fault-kind", _set("faults.0.kind", "meteor")),
    ("fault-unknown-target", _set("faults.0.target", "nobody")),
    ("slo-garbage", _set("slo", ["lost <<= 0"])),
    ("port-out-of-range", _set("servers.1", {"name": "secondary", "host": "127.0.0.1",
                                            "port": 70000})),
]  # fmt: skip


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in out + err
    return lines[0]


def _scenario_file(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_base_scenario_is_valid(tmp_path, capsys):
    """BASE validates and every case changes it (a KeyError here is a path not in BASE), so
    each refusal below is for the case's own change."""
    assert cli.main(["validate", str(_scenario_file(tmp_path, BASE))]) == 0
    for case, change in HOSTILE_SCENARIOS:
        data = copy.deepcopy(BASE)
        change(data)
        assert data != BASE, case
    assert len({case for case, _ in HOSTILE_SCENARIOS}) == len(HOSTILE_SCENARIOS)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("case", "change"), HOSTILE_SCENARIOS, ids=[c for c, _ in HOSTILE_SCENARIOS]
)
def test_a_hostile_scenario_is_refused_by_validate(tmp_path, capsys, case, change):
    data = copy.deepcopy(BASE)
    change(data)
    code = cli.main(["validate", str(_scenario_file(tmp_path, data))])
    line = _one_line_exit_2(capsys, code)
    assert "hostile.yaml" in line or "scenario" in line, line


REFUSED_BEFORE_A_RUN = [
    c for c in HOSTILE_SCENARIOS if c[0].startswith(("name-", "domain-", "postfix-", "fault-"))
]


@pytest.mark.parametrize(
    ("case", "change"), REFUSED_BEFORE_A_RUN, ids=[c for c, _ in REFUSED_BEFORE_A_RUN]
)
def test_a_hostile_scenario_never_starts_a_run(tmp_path, capsys, monkeypatch, case, change):
    """`maildrill run` refuses before it makes a run directory or starts anything."""
    data = copy.deepcopy(BASE)
    change(data)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = cli.main(["run", str(_scenario_file(tmp_path, data))])
    _one_line_exit_2(capsys, code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.yaml", "work"]
    assert list(work.iterdir()) == []


HOSTILE_TEXT: list[tuple[str, str]] = [
    ("not-yaml", "name: [unclosed\n  - {\n"),
    ("a-list", "- name: x\n- name: y\n"),
    ("a-number", "42\n"),
    ("empty", ""),
    ("binary", "\x00\x01\x02\xff"),
    ("yaml-inf-literal", yaml.safe_dump(BASE).replace("duration: 1", "duration: .inf")),
    ("yaml-1e400", yaml.safe_dump(BASE).replace("rate: 5", "rate: 1e400")),
    ("unknown-top-level-key", yaml.safe_dump({**BASE, "allow_remtoe": True})),
]


@pytest.mark.parametrize(("case", "text"), HOSTILE_TEXT, ids=[c for c, _ in HOSTILE_TEXT])
def test_a_hostile_scenario_file_is_refused(tmp_path, capsys, case, text):
    path = tmp_path / "hostile.yaml"
    if case == "binary":
        path.write_bytes(bytes(range(256)))
    else:
        path.write_text(text, encoding="utf-8")
    _one_line_exit_2(capsys, cli.main(["validate", str(path)]))


@pytest.mark.parametrize("what", ["dev-zero", "fifo", "directory"])
def test_a_scenario_that_is_not_a_regular_file_is_refused_at_once(tmp_path, capsys, what):
    """`/dev/zero` or a FIFO nobody writes to would be read forever."""
    path = {"dev-zero": Path("/dev/zero"), "fifo": tmp_path / "fifo", "directory": tmp_path}
    if what == "fifo":
        os.mkfifo(path[what])
    _one_line_exit_2(capsys, cli.main(["validate", str(path[what])]))


@pytest.mark.parametrize(
    "setting",
    ["users=inf", "campaign.schedule.0.rate=nan", "faults.0.duration=1e400", "users=-1",
     "name=../up", "campaign.streams.0.domains={gmail.com>.test: 1}"],
)  # fmt: skip
def test_hostile_set_values_are_refused(tmp_path, capsys, setting):
    path = _scenario_file(tmp_path, BASE)
    _one_line_exit_2(capsys, cli.main(["validate", str(path), "--set", setting]))


HOSTILE_SINK_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("sink-name-dotdot", {"sinks": [{"name": "../x"}]}),
    ("sink-remote-host", {"sinks": [{"name": "mx", "host": "192.0.2.1"}]}),
    ("sink-fault-inf", {"sinks": [{"name": "mx", "faults": [{"kind": "down", "at": 1,
                                                             "duration": float("inf")}]}]}),
    ("sink-hostname-crlf", {"sinks": [{"name": "mx", "hostname": "a\r\nb"}]}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "config"), HOSTILE_SINK_CONFIGS, ids=[c for c, _ in HOSTILE_SINK_CONFIGS]
)
def test_a_hostile_sink_config_is_refused(tmp_path, capsys, case, config):
    path = tmp_path / "sinks.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "journals"
    code = cli.main(["sink", str(path), "--out", str(out)])
    _one_line_exit_2(capsys, code)
    assert not (tmp_path / "x").exists()


# Run directories, damaged: each from a good hand-built drill with one thing broken.
def _rm(name: str) -> Callable[[Path], None]:
    return lambda run_dir: (run_dir / name).unlink()


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def change(run_dir: Path) -> None:
        path = run_dir / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")

    return change


def _duplicate_header_column(run_dir: Path) -> None:
    path = run_dir / "attempts.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = lines[0].rstrip("\n") + ",msg_id\n"
    path.write_text("".join(lines), encoding="utf-8")


HOSTILE_RUN_DIRS: list[tuple[str, Callable[[Path], None]]] = [
    ("attempts-missing", _rm("attempts.csv")),
    ("attempts-empty", _write("attempts.csv", "")),
    ("attempts-random-bytes", _write("attempts.csv", os.urandom(4096))),
    ("attempts-duplicate-column", _duplicate_header_column),
    ("run-json-truncated", _write("run.json", '{"run_id": "hand-drill", "t0": 18')),
    ("run-json-a-list", _write("run.json", "[1, 2, 3]")),
    ("run-json-t0-text", _write("run.json", json.dumps({"run_id": "x", "t0": "soon",
                                                         "planned": 40, "workers": []}))),
    ("run-json-missing", _rm("run.json")),
    ("harness-corrupt", _write("harness.json", "{not json")),
    ("scenario-corrupt", _write("scenario.yaml", "servers: [\n")),
    ("scenario-missing", _rm("scenario.yaml")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "damage"), HOSTILE_RUN_DIRS, ids=[c for c, _ in HOSTILE_RUN_DIRS])
def test_a_damaged_run_directory_is_named_not_analysed(tmp_path, capsys, case, damage):
    run_dir = runs.drill(tmp_path / "run")
    damage(run_dir)
    line = _one_line_exit_2(capsys, cli.main(["report", str(run_dir)]))
    named = case.split("-")[0].replace("run", "run.json").replace("harness", "harness.json")
    assert named.split(".")[0] in line, line


@pytest.mark.parametrize("output", ["summary.json", "report.html", "plots", "plots/throughput.png"])
def test_report_writes_nothing_through_a_planted_link(tmp_path, capsys, output):
    """A run directory handed over with a link where a report goes: nothing is written
    outside it."""
    run_dir = runs.drill(tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    target.write_text("keep me", encoding="utf-8")
    if output == "plots/throughput.png":
        (run_dir / "plots").mkdir()
    (run_dir / output).symlink_to(target if "." in output else outside)
    _one_line_exit_2(capsys, cli.main(["report", str(run_dir)]))
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert target.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("what", ["missing", "a-file"])
def test_report_on_a_path_that_is_not_a_run_directory(tmp_path, capsys, what):
    path = tmp_path / "nothing"
    if what == "a-file":
        path.write_text("x", encoding="utf-8")
    _one_line_exit_2(capsys, cli.main(["report", str(path)]))


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--workers", "many"])
    _one_line_exit_2(capsys, int(stop.value.code or 0))


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "{scenario}"],
        ["report", "{run_dir}"],
    ],
    ids=["validate", "report"],
)
def test_as_a_real_process_no_traceback(tmp_path, argv):
    data = copy.deepcopy(BASE)
    data["campaign"]["domains"] = {"gmail.com>.test": 1}
    scenario = _scenario_file(tmp_path, data)
    run_dir = runs.drill(tmp_path / "run")
    (run_dir / "run.json").write_text("{", encoding="utf-8")
    args = [a.format(scenario=scenario, run_dir=run_dir) for a in argv]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_report_whose_analysis_child_was_killed_says_so_in_one_line(
    tmp_path, capsys, monkeypatch
):
    """The out-of-memory killer ends a partition's child: the report is not written, and
    the user reads why, in one line."""
    from loadtest.analysis import in_child, summary

    run_dir = runs.drill(tmp_path / "run")

    def killed(path, reports=True):
        raise in_child.ChildKilled(9)

    monkeypatch.setattr(summary, "write", killed)
    line = _one_line_exit_2(capsys, cli.main(["report", str(run_dir)]))
    assert "killed by signal 9 (out of memory?)" in line, line
    assert str(run_dir) in line
