"""The README's way to drill a real MTA's DNS behaviour (its resolver cannot be told a
port): `maildrill sinks --dns-port 53` in a network namespace of the test's own, whose
resolv.conf (`/etc/netns/NAME/resolv.conf`, mounted over /etc/resolv.conf by `ip netns
exec`) names 127.0.0.1. A program that asks the system's resolver there, as Postfix's SMTP
client does, gets the scenario's zones and its DNS faults; the machine's resolver is never
touched, and the namespace and its directory go at the end, also on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import maildrill_sinks, read_csv

SCENARIO = """\
name: mta-resolver
servers:
  - {name: primary, priority: 10, local: true}
campaign:
  schedule: [{duration_s: 60, rate: 1}]
dns:
  zones:
    shop.test:
      "@": {MX: ["10 mx1.shop.test", "20 mx2.shop.test"]}
      mx1: {A: 127.0.0.11}
      mx2: {A: 127.0.0.12}
faults:
  - {at: 4, target: dns, kind: servfail, duration: 30, names: [shop.test]}
"""
# What a libc resolver client sees: getaddrinfo goes through /etc/resolv.conf, as
# Postfix's res_search does (an MX question needs more than the standard library has).
LOOKUP = "import socket, sys; print(socket.getaddrinfo(sys.argv[1], 25)[0][4][0])"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("dig") is None:
        return "needs iproute2's `ip` and `dig` (make tools)"
    return None


@pytest.fixture
def namespace() -> Iterator[str]:
    why = _unavailable()
    if why:
        pytest.skip(why)
    name = f"mdrill-{os.getpid()}-res"
    etc = Path("/etc/netns") / name
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if made.returncode:
            pytest.skip(f"`ip netns add` refused: {made.stderr.strip()}")
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def inside(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True,
                          timeout=20)  # fmt: skip


def test_a_resolver_in_its_own_namespace_asks_the_runs_dns(namespace: str, tmp_path: Path):
    scenario, out = tmp_path / "s.yaml", tmp_path / "run"
    scenario.write_text(SCENARIO)
    with maildrill_sinks(scenario, out, "--dns-port", "53",
                         prefix=["ip", "netns", "exec", namespace]) as sinks:  # fmt: skip
        t0, ready = sinks.ready["t0"], sinks.ready["dns"]
        assert (ready["host"], ready["port"]) == ("127.0.0.1", 53)
        mx = inside(namespace, "dig", "+short", "MX", "shop.test")
        a = inside(namespace, sys.executable, "-c", LOOKUP, "mx1.shop.test")
        before = time.time()
        # The SERVFAIL window opens at t0 + 4 on the DNS server's clock.
        time.sleep(max(0.0, t0 + 4.2 - time.time()))
        failed = inside(namespace, "dig", "MX", "shop.test")
        sinks.stop()
    if before < t0 + 4:  # asked before the window, unless the machine stalled that long
        assert sorted(mx.stdout.splitlines()) == ["10 mx1.shop.test.", "20 mx2.shop.test."], mx
        assert a.stdout.strip() == "127.0.0.11", a
    assert "status: SERVFAIL" in failed.stdout, failed.stdout
    # The run's DNS journaled each question the namespace's resolver asked, and its answer.
    asked = [(r["name"], r["type"], r["rcode"]) for r in read_csv(out / "dns-queries.csv")]
    assert asked[-1] == ("shop.test", "MX", "SERVFAIL")
    if before < t0 + 4:
        assert asked[:2] == [("shop.test", "MX", "NOERROR"), ("mx1.shop.test", "A", "NOERROR")]
