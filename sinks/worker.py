"""One worker process of a sink with `processes: N`: `python -m sinks.worker`.

Started by `sinks.multiprocess`, never by hand. Its spec (the sink's config, inline AUTH
passwords included) arrives as the first line of its stdin, a pipe only the parent holds:
never on the command line, where `ps` shows it to every user of the machine. The worker
serves the sink on the port the parent reserved, beside its siblings (SO_REUSEPORT), with
its own journals (`worker` K > 0 names them `-wK`), and serves the sink's control API on
127.0.0.1:0 for the parent to fan requests out to. It prints one JSON line when it listens
(`port`, `control_port`) and one with its final status when it stops: on SIGTERM or
SIGINT, or when its stdin closes because the parent is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from maildrill.inputs import describe_errors
from sinks.backup_mx import QueueUnavailable
from sinks.config import SinkConfig
from sinks.control import ControlServer
from sinks.sink import Sink


class WorkerSpec(BaseModel):
    sink: SinkConfig  # with the reserved port and any generated certificate filled in
    worker: int
    seed: int
    journal_dir: Path
    start_at: float
    loop: Literal["uvloop", "asyncio"] = "asyncio"


class _ParentWatch(asyncio.Protocol):
    """Our stdin is a pipe from the parent: it closes when the parent dies, even by SIGKILL."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


async def work(spec: WorkerSpec) -> None:
    sink = Sink(spec.sink, spec.journal_dir, seed=spec.seed, worker=spec.worker, reuse_port=True)
    control = ControlServer(sink)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await loop.connect_read_pipe(lambda: _ParentWatch(stop), sys.stdin)
    try:
        await sink.start(spec.start_at)
        await control.start()
        print(json.dumps({"port": sink.port, "control_port": control.port}), flush=True)
        await stop.wait()
    finally:
        await control.stop()
        await sink.stop()
    try:
        print(json.dumps(sink.status()), flush=True)
    except BrokenPipeError:  # the parent is gone: nobody to tell, and no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def read_spec(line: bytes) -> WorkerSpec:
    """The spec from its JSON line; ValueError says what is wrong without quoting the input
    (pydantic's own message would echo it, passwords and all, into the sink's log)."""
    try:
        return WorkerSpec.model_validate_json(line)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None


def main() -> int:
    # The parent writes this one line and nothing more: what follows is the pipe's end.
    try:
        spec = read_spec(sys.stdin.buffer.readline())
    except ValueError as exc:
        print(f"maildrill sink worker: bad spec on stdin: {exc}", file=sys.stderr)
        return 2
    try:
        if spec.loop == "uvloop":
            import uvloop

            uvloop.run(work(spec))
        else:
            asyncio.run(work(spec))
    except QueueUnavailable as exc:  # the parent says which worker did not start
        print(f"maildrill sink: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
