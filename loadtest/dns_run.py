"""The run's DNS server in a drill: the scenario's zones written to the run directory as
master files (`dns/ZONE.zone`), then served from those very files by a child process
(`python -m maildrill.dns`, role `dns`), so the zones kept are the zones that were served.

It starts before the sinks and MTAs (they may look names up as soon as they run) and stops
after them; its address goes into run.json (`dns: {host, port}`) and harness.json's events.
It keeps its journals in the run directory (faults-dns.csv beside the sinks' faults
journals, dns-queries.csv) and takes DNS faults (`target: dns`) through its control API,
on 127.0.0.1 with the run's control token (given by environment, as the sinks' is).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.dkim_keys import with_txt
from loadtest.scenario import Scenario
from loadtest.sink_fleet import ready_line
from loadtest.supervise import Supervisor
from maildrill.control_auth import TOKEN_ENV
from maildrill.dns.files import ZONE_DIR, write_zones
from sinks.control_client import ControlClient

Address = tuple[str, int]


@dataclass(frozen=True)
class RunDns:
    """The run's DNS server as started: where it answers, and its control API."""

    address: Address
    control: ControlClient


def write_run_zones(
    scenario: Scenario, run_dir: Path, txt: Mapping[str, str] | None = None
) -> list[Path]:
    """The scenario's zones as master files in RUN_DIR/dns/; none without `dns:`. `txt`
    adds records the run made (its DKIM keys: owner name to value)."""
    if scenario.dns is None:
        return []
    zones = scenario.dns.build(allow_remote=scenario.allow_remote)
    return write_zones(with_txt(zones, txt or {}), run_dir / ZONE_DIR)


def start_dns(
    scenario: Scenario,
    run_dir: Path,
    children: Supervisor,
    stopping: Callable[[], bool],
    txt: Mapping[str, str] | None = None,
    token: str = "",
) -> RunDns | None:
    """The scenario's DNS server started and listening; None when it has no `dns:`.
    `token`: the run's control token (empty: one the server makes and prints)."""
    paths = write_run_zones(scenario, run_dir, txt)
    if not paths:
        return None
    cmd = [sys.executable, "-m", "maildrill.dns", *map(str, paths), "--journal-dir", str(run_dir)]
    env = {TOKEN_ENV: token} if token else None
    child = children.spawn("dns", "dns", cmd, stdout=subprocess.PIPE, env=env)
    ready = ready_line(child, stopping, "the DNS server")["dns"]
    control = ControlClient.on_port(int(ready["control_port"]), token or str(ready["token"]))
    return RunDns((str(ready["host"]), int(ready["port"])), control)
