"""A scenario's local sinks: where every server listens, and the sinks started in waves.

A backup MX or proxy forwards to another server by name and needs that server's real
address in its config, so sinks start in waves: each wave is every sink whose upstream is
known, started at once, its addresses read from the ready lines. The MTAs start after the
sinks (they relay to them) but get their ports first: a proxy in front of one needs it.

`maildrill sinks` starts the sinks in one process instead (`sinks_file`): the upstreams'
ports are chosen before any of them starts.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from loadtest.runlog import SetupError
from loadtest.scenario import Scenario
from loadtest.server_spec import ServerSpec
from loadtest.supervise import Child, Supervisor, free_port
from maildrill.control_auth import TOKEN_ENV
from maildrill.paths import inside, make_private_dir, remove_private_dir, write_private
from sinks.config import SinksFile
from sinks.control_client import ControlClient

READY_TIMEOUT_S = 20.0

Address = tuple[str, int]


def preset_addresses(scenario: Scenario) -> dict[str, Address]:
    """The addresses known before any sink starts: each Postfix instance's (its port, or
    a free one chosen now) and each server maildrill does not start."""
    addresses: dict[str, Address] = {}
    for server in scenario.servers:
        if server.postfix is not None:
            addresses[server.name] = ("127.0.0.1", server.port or free_port())
    for server in scenario.servers:
        if not server.local:
            addresses.setdefault(server.name, (server.host, server.port))
    return addresses


def sinks_file(scenario: Scenario) -> SinksFile:
    """Every local sink of the scenario in one config (`maildrill sinks`): an upstream
    named by server gets its port now, and a local one listens there. SetupError for an
    upstream this cannot start or find. A sink verifying against the run's DNS server gets
    its address later, once it listens (`with_run_dns`)."""
    addresses: dict[str, Address] = {}
    for name in {s.upstream_name for s in scenario.servers} - {None}:
        upstream = scenario.server(str(name))
        if upstream.postfix is not None:
            raise SetupError(f"{scenario.name}: {name} is a Postfix server; `maildrill sinks` "
                             "starts sinks only (use `maildrill run`)")  # fmt: skip
        if not upstream.local and not upstream.port:
            raise SetupError(f"{scenario.name}: servers: {name!r} needs a port (it is not local)")
        addresses[upstream.name] = (upstream.host, upstream.port or free_port())
    local = [
        s.sink_config(addresses).model_copy(update={"port": addresses.get(s.name, ("", s.port))[1]})
        for s in scenario.servers
        if s.local
    ]
    if not local:
        raise SetupError(f"{scenario.name}: no local servers (local: true) to start")
    return SinksFile(sinks=local, seed=scenario.campaign.seed, allow_remote=scenario.allow_remote)


def with_run_dns(config: SinksFile, scenario: Scenario, dns: Address) -> SinksFile:
    """`config` with the run's DNS server written into every sink whose scenario `verify:`
    asks it (`dns: run`, or no dns)."""
    asking = {s.name for s in scenario.servers if s.local and s.sink.run_dns}
    sinks = []
    for sink in config.sinks:
        if sink.name in asking and sink.verify is not None:
            verify = sink.verify.model_copy(update={"dns": f"{dns[0]}:{dns[1]}"})
            sink = sink.model_copy(update={"verify": verify})
        sinks.append(sink)
    return config.model_copy(update={"sinks": sinks})


class SinkFleet:
    """One `python -m sinks` process per local server, and a control client for each."""

    def __init__(
        self,
        scenario: Scenario,
        run_dir: Path,
        children: Supervisor,
        token: str,
        redact: Callable[[Any], Any],
    ) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.children = children
        self.token = token  # this run's control token, given to the sinks by environment
        self.redact = redact  # for the copy of each sink's config kept in the run directory
        self.controls: dict[str, ControlClient] = {}
        self.private_dir: Path | None = None

    def start(
        self,
        addresses: dict[str, Address],
        stopping: Callable[[], bool],
        dns: Address | None = None,
    ) -> None:
        """Start every local sink, adding each one's address to `addresses` as it becomes
        ready; stops early (quietly) once `stopping()`. `dns`: the run's DNS server, for
        the sinks whose `verify:` asks it."""
        record_dir = self.run_dir / "sinks"  # each sink's config, secrets redacted
        record_dir.mkdir(exist_ok=True)
        # What the sinks read may hold passwords: a private directory, gone after the run.
        self.private_dir = make_private_dir()
        pending = [s for s in self.scenario.servers if s.local]
        while pending and not stopping():
            wave = [s for s in pending if s.upstream_name in (None, *addresses)]
            if not wave:
                names = ", ".join(s.name for s in pending)
                raise SetupError(f"sinks {names}: their upstreams name each other in a circle")
            started = [(server, self._spawn(server, addresses, dns, record_dir)) for server in wave]
            for server, child in started:
                (entry,) = ready_line(child, stopping, f"sink {child.name}")["sinks"]
                addresses[server.name] = (entry["host"], int(entry["port"]))
                self.controls[server.name] = ControlClient.on_port(
                    int(entry["control_port"]), self.token
                )
            pending = [s for s in pending if s not in wave]

    def stop(self) -> None:
        for child in self.children.of("sink"):
            child.stop(signal.SIGTERM, 10.0)
        remove_private_dir(self.private_dir)

    def _spawn(
        self,
        server: ServerSpec,
        addresses: dict[str, Address],
        dns: Address | None,
        record_dir: Path,
    ) -> Child:
        if dns is None and server.sink.run_dns:  # validation refuses it (verify_dns_served)
            raise SetupError(f"sink {server.name}: verify asks the run's DNS server; none runs")
        sink = server.sink_config(addresses, dns)
        config = {
            "seed": self.scenario.campaign.seed,
            # A proxy in front of a remote server needs it (the scenario said so).
            "allow_remote": self.scenario.allow_remote,
            "sinks": [sink.model_dump(mode="json", exclude_none=True)],
        }
        assert self.private_dir is not None
        path = inside(self.private_dir, f"{server.name}.yaml")
        write_private(path, yaml.safe_dump(config, sort_keys=False))
        record = inside(record_dir, f"{server.name}.yaml")
        record.write_text(yaml.safe_dump(self.redact(config), sort_keys=False))
        cmd = [sys.executable, "-m", "sinks", str(path), "--out", str(self.run_dir)]
        return self.children.spawn(
            "sink", server.name, cmd, stdout=subprocess.PIPE, env={TOKEN_ENV: self.token}
        )


def ready_line(child: Child, stopping: Callable[[], bool], what: str) -> dict[str, Any]:
    """The JSON ready line a child prints once it listens (a sink, the run's DNS server);
    SetupError naming `what` and the child's last log line when it dies or is silent for
    READY_TIMEOUT_S, or when the run is stopping."""
    assert child.proc.stdout is not None
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline and not stopping():
        readable, _, _ = select.select([child.proc.stdout], [], [], 0.2)
        if readable:
            line = child.proc.stdout.readline()
            if line:
                return dict(json.loads(line))
            break
        if child.proc.poll() is not None:
            break
    why = child.last_log_line() or f"exit code {child.proc.poll()}"
    raise SetupError(f"{what} did not start: {why}")
