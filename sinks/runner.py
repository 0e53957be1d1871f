"""Start the sinks of a config file, print the ready line, serve until told to stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sinks.config import SinkConfig, SinksFile
from sinks.control import ControlServer, control_token
from sinks.multiprocess import WorkerGroup
from sinks.proxy import Proxy
from sinks.sink import Sink


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
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Run until SIGINT or SIGTERM (or a worker process dies); returns the final counters,
    with `errors` when something failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    errors: list[str] = []

    def failed(message: str) -> None:
        errors.append(message)
        err.write(f"maildrill sink: {message}; stopping\n")
        stop.set()

    sinks = SinkSet(config, journal_dir, on_failure=failed)
    try:
        await sinks.start(start_at)
        out.write(json.dumps(sinks.ready_line()) + "\n")
        out.flush()
        await stop.wait()
    finally:
        await sinks.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    final = sinks.final()
    if errors:
        final["errors"] = errors
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
