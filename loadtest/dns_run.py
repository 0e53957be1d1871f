"""The run's DNS server in a drill: the scenario's zones written to the run directory as
master files (`dns/ZONE.zone`), then served from those very files by a child process
(`python -m maildrill.dns`, role `dns`), so the zones kept are the zones that were served.

It starts before the sinks and MTAs (they may look names up as soon as they run) and stops
after them; its address goes into run.json (`dns: {host, port}`) and harness.json's events.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from loadtest.dkim_keys import with_txt
from loadtest.scenario import Scenario
from loadtest.sink_fleet import ready_line
from loadtest.supervise import Supervisor
from maildrill.dns.files import write_zones

ZONE_DIR = "dns"

Address = tuple[str, int]


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
) -> Address | None:
    """The scenario's DNS server started and listening; None when it has no `dns:`."""
    paths = write_run_zones(scenario, run_dir, txt)
    if not paths:
        return None
    cmd = [sys.executable, "-m", "maildrill.dns", *map(str, paths)]
    child = children.spawn("dns", "dns", cmd, stdout=subprocess.PIPE)
    ready = ready_line(child, stopping, "the DNS server")["dns"]
    return str(ready["host"]), int(ready["port"])
