"""`maildrill run --master-bind/--expect-workers` and `maildrill worker --master` refuse bad
input before anything starts: one line on stderr, exit 2, no traceback, no run directory.
In process (`loadtest.cli.main`): none of these opens a socket or starts a process."""

from __future__ import annotations

import pytest

from loadtest.cli import main


def _main_or_exit(argv: list[str]) -> int:
    """maildrill's exit code: returned, or argparse's exit for a usage mistake."""
    try:
        return main(argv)
    except SystemExit as ended:
        return int(ended.code or 0)


def assert_one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--master", "127.0.0.1:port"], ["--master", "not a port number"]),
        (["--master", "127.0.0.1:0"], ["1-65535"]),
        (["--master", "bad_host!:5557"], ["not a host name"]),
        # A label over 63 characters (the resolver's encoder raised UnicodeError), an
        # all-numeric last label (a mistyped address, not a name), IPv6.
        (["--master", "a" * 70 + ".com"], ["not a host name"]),
        (["--master", "1.2.3.4.5"], ["'1.2.3.4.5' is not a host name"]),
        (["--master", "::1"], ["--master '::1': IPv6 is not supported", "IPv4 address or a host"]),
        (["--master", "[::1]:5557"], ["IPv6 is not supported"]),
        (["--master", "127.0.0.1:5557", "--wait", "0"], ["--wait"]),
        (["--master", "127.0.0.1:5557", "--wait", "forever"], ["--wait"]),
        ([], ["--master"]),
    ],
)
def test_worker_bad_input_is_one_line_and_exit_2(capsys, args, words):
    code = _main_or_exit(["worker", *args])
    assert_one_line(code, capsys.readouterr().err, *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--master-bind", "127.0.0.1:x", "--expect-workers", "1"], ["not a port number"]),
        (["--master-bind", "master.example.test", "--expect-workers", "1"], ["IPv4 address"]),
        (["--master-bind", "127.0.0.1"], ["needs --expect-workers"]),
        (["--expect-workers", "2"], ["go with --master-bind"]),
        (["--master-bind", "127.0.0.1", "--expect-workers", "0"], ["--expect-workers 0", "1 to"]),
        (["--master-bind", "127.0.0.1", "--expect-workers", "2", "--workers", "2"],
         ["--workers starts local workers"]),
        (["--master-bind", "127.0.0.1", "--expect-workers", "1", "--workers-wait", "0"],
         ["--workers-wait"]),
        (["--master-bind", "127.0.0.1", "--expect-workers", "one"], ["--expect-workers"]),
        # Outside loopback: the scenario must allow it, and then a person must confirm.
        (["--master-bind", "198.18.1.1", "--expect-workers", "1"],
         ["--master-bind 198.18.1.1:5557", "allow_remote: true"]),
        # ... and the targets must be reachable from other hosts: not loopback.
        (["--master-bind", "0.0.0.0:6000", "--expect-workers", "1", "--set", "allow_remote=true",
          "--yes"],
         ["--master-bind 0.0.0.0:6000: workers on other hosts would send to their own "
          "loopback, not to primary 127.0.0.1, secondary 127.0.0.1"]),
    ],
)  # fmt: skip
def test_run_bad_distributed_flags_are_one_line_and_nothing_starts(capsys, tmp_path, args, words):
    run_dir = tmp_path / "run"
    code = _main_or_exit(["run", "default", "--out", str(run_dir), *args])
    assert_one_line(code, capsys.readouterr().err, *words)
    assert not run_dir.exists()
