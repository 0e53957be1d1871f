"""A drill across hosts, for real on one machine: the master and its sinks in one network
namespace, two `maildrill worker`s in two others, joined by veth pairs, every address in
198.18.0.0/15 (RFC 2544's benchmarking range: never routed anywhere). Nothing is shared
between them but the network: the journals on the master's side are whole only if the
workers' rows came over Locust's channel.

    ns M (master, sinks)                   ns A (worker a)
      to-a: 198.18.1.1/24  <--- veth ---> to-m: 198.18.1.2/24, 198.18.0.0/15 via 198.18.1.1
      to-b: 198.18.2.1/24  <--- veth --->  ns B (worker b)
                                          to-m: 198.18.2.2/24, 198.18.0.0/15 via 198.18.2.1

Needs root and iproute2 (`ip netns`): skipped with the reason otherwise, or failed when
MAILDRILL_REQUIRE_NETNS=1 (for a CI machine known to allow namespaces: there a skip would
hide that it never ran). The namespaces are named with this process's pid (`mdrill-PID-m`,
...): a parallel run cannot collide, and one left by a crashed run is removed once its pid
is gone. Every interface is made inside a namespace and goes with it; every process is ours
and is stopped, also on failure.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import pytest

from tests.helpers import LATE_S, SHORT_DEFAULT

pytestmark = pytest.mark.slow

PREFIX = "mdrill-"
MASTER_ADDRESS = "198.18.1.1"
WORKER_ADDRESSES = {"a": "198.18.1.2", "b": "198.18.2.2"}
GATEWAYS = {"a": "198.18.1.1", "b": "198.18.2.1"}
MASTER_PORT = 5557


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs this test as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unavailable: {exc}"
    return None


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _remove(name: str) -> None:
    """Stop every process still in one of our namespaces (ours: its name has our pid),
    then delete it; its interfaces go with it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                          timeout=10).stdout.split()  # fmt: skip
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_pid_alive(int(p)) for p in pids):
            time.sleep(0.05)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def _remove_leftovers() -> None:
    """Namespaces of our naming whose test process is gone (a crashed run)."""
    for name in _namespaces():
        match = re.fullmatch(rf"{PREFIX}(\d+)-[mab]", name)
        if match and not _pid_alive(int(match.group(1))):
            _remove(name)


@dataclass
class Net:
    master: str
    workers: dict[str, str]  # a, b -> namespace


# Set where the namespace test must run (a CI known to allow namespaces): there a skip would
# hide that it did not (the "passes in CI").
REQUIRE_ENV = "MAILDRILL_REQUIRE_NETNS"


def _cannot(why: str) -> NoReturn:
    """Skip with the reason, or fail when this machine is required to run the test."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the namespace test cannot run: {why}")
    pytest.skip(why)


@pytest.fixture
def net() -> Iterator[Net]:
    why = _unavailable()
    if why:
        _cannot(why)
    _remove_leftovers()
    base = f"{PREFIX}{os.getpid()}"
    net = Net(f"{base}-m", {w: f"{base}-{w}" for w in WORKER_ADDRESSES})
    made = []
    try:
        for name in (net.master, *net.workers.values()):
            added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                                   timeout=10)  # fmt: skip
            if added.returncode != 0 and not made:  # root without CAP_SYS_ADMIN, say
                _cannot(f"`ip netns add` is refused here: {added.stderr.strip()}")
            added.check_returncode()
            made.append(name)
            _ip("-n", name, "link", "set", "dev", "lo", "up")
        for worker, ns in net.workers.items():
            # The pair is made inside the master's namespace, one end moved to the worker's:
            # no interface ever exists outside our namespaces.
            _ip("-n", net.master, "link", "add", "name", f"to-{worker}", "type", "veth",
                "peer", "name", "to-m", "netns", ns)  # fmt: skip
            _ip("-n", net.master, "addr", "add", f"{GATEWAYS[worker]}/24", "dev", f"to-{worker}")
            _ip("-n", net.master, "link", "set", "dev", f"to-{worker}", "up")
            _ip("-n", ns, "addr", "add", f"{WORKER_ADDRESSES[worker]}/24", "dev", "to-m")
            _ip("-n", ns, "link", "set", "dev", "to-m", "up")
            _ip("-n", ns, "route", "add", "198.18.0.0/15", "via", GATEWAYS[worker])
        yield net
    finally:
        for name in made:
            _remove(name)
        assert not set(made) & set(_namespaces())


class Processes:
    """The processes this test starts (in a namespace, by `ip netns exec`, which execs:
    the pid is the command's); each stopped by its pid at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []

    def start(self, ns: str, name: str, *args: str) -> subprocess.Popen[str]:
        log = (self.out / f"{name}.log").open("w")
        self.logs.append(log)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "loadtest.cli", *args],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self.logs:
            log.close()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_drill_across_namespaces_ends_with_whole_journals_on_the_master(net, tmp_path):
    run_dir = tmp_path / "run"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    started = time.monotonic()
    try:
        master = procs.start(
            net.master, "master", "run", "default", "--out", str(run_dir), *SHORT_DEFAULT,
            "--set", "allow_remote=true",
            "--set", f"servers.0.host={MASTER_ADDRESS}",
            "--set", f"servers.1.host={MASTER_ADDRESS}",
            "--master-bind", f"{MASTER_ADDRESS}:{MASTER_PORT}", "--expect-workers", "2",
            "--workers-wait", "30", "--yes",
        )  # fmt: skip
        address = f"{MASTER_ADDRESS}:{MASTER_PORT}"
        workers = {
            w: procs.start(
                ns, f"worker-{w}", "worker", "--master", address, "--wait", "30", "--yes"
            )
            for w, ns in net.workers.items()
        }
        code = master.wait(90)
        ends = {w: p.wait(30) for w, p in workers.items()}
    finally:
        procs.stop_all()
    wall = time.monotonic() - started
    said = {p.name: p.read_text() for p in logs.iterdir()}
    assert code == 0, said["master.log"]
    assert ends == {"a": 0, "b": 0}, said
    print(f"distributed drill: {wall:.1f} s wall")

    summary = json.loads((run_dir / "summary.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    roll = json.loads((run_dir / "workers.json").read_text())["workers"]
    harness = json.loads((run_dir / "harness.json").read_text())
    attempts = _rows(run_dir / "attempts.csv")
    receipts = [r for p in sorted(run_dir.glob("receipts*.csv")) for r in _rows(p)]

    # Both workers sent, and the master has every row each says it shipped.
    per_worker = Counter(a["worker"] for a in attempts)
    assert set(per_worker) == set(roll) == set(run["workers"])
    assert len(per_worker) == 2
    for worker, state in roll.items():
        assert state["shipped"] == state["rows"] == per_worker[worker], roll
        assert state["lost_at_s"] is None
    assert harness["workers_lost"] == []

    # The mail really came from the workers' namespaces: each worker's accepted messages
    # reached the sinks from one address of its own, in 198.18.0.0/15.
    peer_of = {r["msg_id"]: r["peer"].rsplit(":", 1)[0] for r in receipts}
    addresses = {}
    for worker in per_worker:
        mine = {
            a["msg_id"] for a in attempts if a["worker"] == worker and a["outcome"] == "accepted"
        }
        (addresses[worker],) = {peer_of[m] for m in mine}
    assert sorted(addresses.values()) == sorted(WORKER_ADDRESSES.values())

    # Every planned message accepted or accounted for, recounted from the journals.
    finals = [a for a in attempts if a["final"] == "1"]
    assert Counter(a["msg_id"] for a in finals).most_common(1)[0][1] == 1
    assert len(finals) == run["planned"] == 250
    accepted = {a["msg_id"] for a in finals if a["outcome"] == "accepted"}
    failed = {a["msg_id"] for a in finals} - accepted
    received = Counter(r["msg_id"] for r in receipts if r["outcome"] == "accepted")
    assert accepted <= set(received)  # nothing accepted was lost
    m = summary["messages"]
    assert (m["planned"], m["accepted"], m["failed"]) == (250, len(accepted), len(failed))
    assert (m["lost"], m["not_sent"]) == (0, 0)
    assert m["received_unique"] == len(received)
    assert m["attempted"] == len({a["msg_id"] for a in attempts})
    # The primary went down at 2 s for 1.5 s: attempts to it were refused then, the
    # secondary took mail (the failover policy sends it nothing otherwise), and the summary
    # counts what the journals show.
    t0 = run["t0"]
    refused = [a for a in attempts if a["server"] == "primary" and a["outcome"] != "accepted"]
    assert refused
    assert all(float(a["end"]) - t0 >= 2.0 and float(a["start"]) - t0 <= 3.5 + LATE_S
               for a in refused)  # fmt: skip
    secondary = [a for a in attempts if a["server"] == "secondary" and a["outcome"] == "accepted"]
    assert secondary
    assert summary["throughput"]["per_server"]["secondary"]["accepted"] == len(secondary)
    assert {r["sink"] for r in receipts if r["msg_id"] in {a["msg_id"] for a in secondary}} == {
        "secondary"
    }
    (fault,) = summary["failovers"]
    assert (fault["target"], fault["kind"]) == ("primary", "down")
    assert fault["failover_s"] is not None
    assert fault["messages_failed"] == len(failed)


def test_where_the_namespace_test_is_required_it_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MAILDRILL_REQUIRE_NETNS=1 but"):
        _cannot("no root")
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="no root"):
        _cannot("no root")
