"""Start the sinks of a config file, print the ready line, serve until told to stop.

With a timeline (`serve(..., timeline=...)`: faults per sink, each `at` seconds after t0),
every fault is sent ahead to its sink before the ready line, and each sink starts and
stops it on its own clock (`sinks.host`); the last line says what became of each.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from maildrill.control_auth import control_token
from sinks.config import FaultSpec, SinkConfig, SinksFile
from sinks.control import ControlServer, start_at_problem
from sinks.multiprocess import WorkerGroup
from sinks.proxy import Proxy
from sinks.sink import Sink

# A timeline: the faults of each sink by name, each `at` seconds after t0.
Timeline = Mapping[str, Sequence[FaultSpec]]


@dataclass(frozen=True)
class Played:
    """One fault of a timeline, sent ahead to its sink under `id`."""

    sink: str
    spec: FaultSpec
    id: str


class SinkSet:
    """The sinks of one config: each with `processes: 1` in this process with its control
    server, each with more as a group of worker processes (`sinks.multiprocess`)."""

    def __init__(
        self,
        config: SinksFile,
        journal_dir: Path,
        *,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.journal_dir = journal_dir
        self.token = control_token()
        local = [c for c in config.sinks if c.processes == 1]
        self.sinks = [_host(c, journal_dir, config.seed) for c in local]
        self.controls = [
            ControlServer(s, c.control_port, self.token)
            for s, c in zip(self.sinks, local, strict=True)
        ]
        self.groups = [
            WorkerGroup(c, journal_dir, seed=config.seed, on_failure=on_failure)
            for c in config.sinks
            if c.processes > 1
        ]

    async def start(self, start_at: float | None = None) -> None:
        zero = start_at if start_at is not None else self.config.start_at
        if zero is None:
            zero = time.time()
        for sink, control in zip(self.sinks, self.controls, strict=True):
            await sink.start(zero)
            await control.start()
        for group in self.groups:
            await group.start(zero)

    async def play(self, timeline: Timeline, t0: float) -> list[Played]:
        """Send every fault of `timeline` ahead to its sink, to start at `t0 + at` on the
        sink's own clock. ValueError (one line) when a sink refuses one."""
        played = []
        for name, faults in timeline.items():
            for spec in sorted(faults, key=lambda f: f.at):
                start_at = t0 + spec.at
                problem = start_at_problem(start_at, spec.duration)
                if problem:
                    raise ValueError(f"sink {name!r}: {spec.kind} at {spec.at:g} s: {problem}")
                if name in self._hosts:
                    host = self._hosts[name]
                    active = await host.add_effect(
                        spec, "schedule", spec.duration, start_at=start_at
                    )
                    played.append(Played(name, spec, active.id))
                else:
                    fault = await self._groups[name].schedule(spec, start_at)
                    played.append(Played(name, spec, fault["id"]))
        return played

    async def states(self, played: Sequence[Played]) -> list[dict[str, Any]]:
        """What became of each fault played: its sink's description (state, start_at,
        started, ended: `sinks.host.ActiveEffect.describe`), with the sink and `at`."""
        out = []
        for entry in played:
            if entry.sink in self._hosts:
                active = self._hosts[entry.sink].fault(entry.id)
                described = active.describe() if active is not None else {"state": "unknown"}
            else:
                described = await self._groups[entry.sink].fault(entry.id)
            out.append({"sink": entry.sink, "at": entry.spec.at, **described})
        return out

    @property
    def _hosts(self) -> dict[str, Sink | Proxy]:
        return {s.name: s for s in self.sinks}

    @property
    def _groups(self) -> dict[str, WorkerGroup]:
        return {g.name: g for g in self.groups}

    async def stop(self) -> None:
        for control in self.controls:
            await control.stop()
        for sink in self.sinks:
            await sink.stop()
        await asyncio.gather(*(group.stop() for group in self.groups))

    def _in_order(self, by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [by_name[c.name] for c in self.config.sinks]

    def ready_line(self) -> dict[str, Any]:
        by_name = {
            s.name: {
                "name": s.name,
                "host": s.config.host,
                "port": s.port,
                "control_port": c.port,
                "control_token": self.token,
                "journal_dir": str(self.journal_dir),
            }
            for s, c in zip(self.sinks, self.controls, strict=True)
        }
        by_name |= {g.name: {**g.ready(), "control_token": self.token} for g in self.groups}
        return {"sinks": self._in_order(by_name)}

    def final(self) -> dict[str, Any]:
        by_name = {s.name: s.status() for s in self.sinks}
        by_name |= {g.name: g.final_status() for g in self.groups}
        return {"stopped": self._in_order(by_name)}

    def __getitem__(self, name: str) -> Sink | Proxy:
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(name)


def _host(config: SinkConfig, journal_dir: Path, seed: int) -> Sink | Proxy:
    """A sink, or a proxy for `mode: proxy` (one process, like a sink's `processes: 1`)."""
    if config.mode == "proxy":
        return Proxy(config, journal_dir, seed=seed)
    return Sink(config, journal_dir, seed=seed)


async def serve(
    config: SinksFile,
    journal_dir: Path,
    *,
    start_at: float | None = None,
    timeline: Timeline | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Run until SIGINT or SIGTERM (or a worker process dies); returns the final counters,
    with `errors` when something failed and `stopped_by` (the signal). With a `timeline`,
    its t0 is `start_at` (else the moment every sink listens): the ready line carries `t0`
    and the final one `timeline`, each fault's state as its sink tells it. `on_ready` gets
    the ready line just before it is printed (a sender may start on that line)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []

    def signalled(sig: signal.Signals) -> None:
        stopped_by.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled, sig)
    errors: list[str] = []

    def failed(message: str) -> None:
        errors.append(message)
        err.write(f"maildrill sink: {message}; stopping\n")
        stop.set()

    sinks = SinkSet(config, journal_dir, on_failure=failed)
    played: list[Played] = []
    states: list[dict[str, Any]] = []
    try:
        await sinks.start(start_at)
        ready = sinks.ready_line()
        if timeline is not None:
            t0 = start_at if start_at is not None else time.time()
            played = await sinks.play(timeline, t0)
            ready["t0"] = t0
        if on_ready is not None:
            on_ready(ready)
        out.write(json.dumps(ready) + "\n")
        out.flush()
        await stop.wait()
    finally:
        if played:
            states = await sinks.states(played)
        await sinks.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    final = sinks.final()
    if timeline is not None:
        final["timeline"] = states
    if errors:
        final["errors"] = errors
    if stopped_by:
        final["stopped_by"] = stopped_by[0]
    out.write(json.dumps(final) + "\n")
    out.flush()
    for status in final["stopped"]:
        c = status["counters"]
        err.write(
            f"{status['name']}: sessions={c['sessions']} accepted={c['accepted']} "
            f"dropped={c['dropped']} deferred={c['deferred']} rejected={c['rejected']} "
            f"bytes={c['bytes']}\n"
        )
    return final
