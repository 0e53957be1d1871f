"""Start the sinks of a config file, print the ready line, serve until told to stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from sinks.config import SinksFile
from sinks.control import ControlServer
from sinks.sink import Sink


class SinkSet:
    """The sinks of one config in this process, each with its control server."""

    def __init__(self, config: SinksFile, journal_dir: Path) -> None:
        self.config = config
        self.journal_dir = journal_dir
        self.sinks = [Sink(c, journal_dir, seed=config.seed) for c in config.sinks]
        self.controls = [
            ControlServer(s, c.control_port) for s, c in zip(self.sinks, config.sinks, strict=True)
        ]

    async def start(self, start_at: float | None = None) -> None:
        zero = start_at if start_at is not None else self.config.start_at
        if zero is None:
            zero = time.time()
        for sink, control in zip(self.sinks, self.controls, strict=True):
            await sink.start(zero)
            await control.start()

    async def stop(self) -> None:
        for control in self.controls:
            await control.stop()
        for sink in self.sinks:
            await sink.stop()

    def ready_line(self) -> dict[str, Any]:
        return {
            "sinks": [
                {
                    "name": s.name,
                    "host": s.config.host,
                    "port": s.port,
                    "control_port": c.port,
                    "journal_dir": str(self.journal_dir),
                }
                for s, c in zip(self.sinks, self.controls, strict=True)
            ]
        }

    def final(self) -> dict[str, Any]:
        return {"stopped": [s.status() for s in self.sinks]}

    def __getitem__(self, name: str) -> Sink:
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(name)


async def serve(
    config: SinksFile,
    journal_dir: Path,
    *,
    start_at: float | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Run until SIGINT or SIGTERM; returns the final counters."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sinks = SinkSet(config, journal_dir)
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
