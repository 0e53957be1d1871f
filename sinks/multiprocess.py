"""A sink with `processes: N`: N worker processes on one port, one control API for all.

The parent binds the sink's port with SO_REUSEPORT and never listens on it: that fixes the
number (for port 0) and holds it, so a `down` that closes every worker's listener leaves
the port refusing connections rather than free for someone else. Each worker
(`sinks.worker`) binds the same port and listens; the kernel spreads connections over them.

The control API of the sink is served here and fans out: requests that change something go
to every worker (each starts or stops the effect on its own listener and sessions, so a
`down` closes the whole port); other reads are answered by worker 0, except `/status` and
`/health`, which combine all (counters summed), and `/metrics`, which shows that sum.
Workers number their effects alike as long as they get the same commands and schedule, so
an id from one names the effect in all.

Limits are per worker: a throttle of 100/s or a connection cap of 10 on a sink with
`processes: 2` lets through about twice that, spread by the kernel's choice of worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from maildrill.control_auth import control_token
from maildrill.paths import make_private_dir, remove_private_dir
from sinks.config import FaultSpec, SinkConfig, TlsConfig
from sinks.control import require_token
from sinks.control_client import AsyncControlClient, Reply, fault_body
from sinks.metrics import registry_for
from sinks.sink import Counters
from sinks.tls import write_self_signed
from sinks.worker import WorkerSpec

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never-listening SO_REUSEPORT socket holding `port` (0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def combine(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """One sink's status from its workers': counters summed, effects as worker 0 has them."""
    first = statuses[0]
    counters = {key: sum(s["counters"][key] for s in statuses) for key in first["counters"]}
    return {
        "name": first["name"],
        "host": first["host"],
        "port": first["port"],
        "listening": all(s["listening"] for s in statuses),
        "processes": len(statuses),
        "counters": counters,
        "active": first["active"],
        "workers": statuses,
    }


class Worker:
    """One worker process, as the parent sees it."""

    def __init__(self, number: int, proc: asyncio.subprocess.Process) -> None:
        self.number = number
        self.proc = proc
        self.control_port = 0  # from its ready line
        self.control: AsyncControlClient | None = None  # once the parent's session is up
        self.final: dict[str, Any] | None = None

    async def ready(self) -> bool:
        """Wait for its ready line; False if it exited instead."""
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            return False
        self.control_port = int(json.loads(line)["control_port"])
        return True

    async def stop(self) -> None:
        """SIGTERM, then its final status line and its exit (SIGKILL if it hangs)."""
        assert self.proc.stdout is not None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                lines = (await self.proc.stdout.read()).splitlines()
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return
        if not self.control_port:
            lines = lines[1:]  # stopped before we read its ready line
        if lines:
            self.final = json.loads(lines[-1])


class WorkerGroup:
    """A sink served by `config.processes` worker processes, with its fan-out control API."""

    def __init__(
        self,
        config: SinkConfig,
        journal_dir: Path,
        *,
        seed: int = 0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.journal_dir = journal_dir
        self.seed = seed
        self.on_failure = on_failure
        self.port = config.port
        self.control_port = 0
        self.workers: list[Worker] = []
        self.final: dict[str, Any] | None = None
        self._reserved: socket.socket | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._keys: Path | None = None  # a generated TLS key, until the workers loaded it
        self._scraped: dict[str, Any] = {}  # the combined status a scrape of /metrics reads
        self._metrics = make_aiohttp_handler(registry_for(lambda: self._scraped))

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, start_at: float) -> None:
        """Returns once every worker listens; raises OSError if one could not."""
        self._reserved = reserve_port(self.config.host, self.config.port)
        self.port = self._reserved.getsockname()[1]
        sink = self.config.model_copy(
            update={"port": self.port, "control_port": 0, "starttls": self._tls()}
        )
        running = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        for number in range(self.config.processes):
            spec = WorkerSpec(
                sink=sink,
                worker=number,
                seed=self.seed,
                journal_dir=self.journal_dir,
                start_at=start_at,
                loop="uvloop" if running else "asyncio",
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sinks.worker",
                stdin=asyncio.subprocess.PIPE,  # the spec; closed when we go: the worker stops
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C is for us; we stop the workers
            )
            self.workers.append(Worker(number, proc))
            await _send_spec(proc, spec)
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                readies = await asyncio.gather(*(w.ready() for w in self.workers))
        except TimeoutError:
            readies = [False]
        finally:
            # Every worker that will ever read the key has read it (or failed).
            remove_private_dir(self._keys)
            self._keys = None
        if not all(readies):
            raise OSError(f"sink {self.name!r}: a worker process did not start (see above)")
        self._watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        for worker in self.workers:
            worker.control = AsyncControlClient(
                f"http://127.0.0.1:{worker.control_port}", control_token(), self._http
            )
        await self._start_control()

    def _tls(self) -> TlsConfig | bool:
        """One self-signed pair made here, or each worker would write its own to one path.
        The key goes to a private directory, removed once the workers have loaded it."""
        tls = self.config.tls
        if tls is None or tls.cert is not None:
            return self.config.starttls
        self._keys = make_private_dir()
        cert, key = write_self_signed(
            self.config.banner_name, self.journal_dir / "tls", key_directory=self._keys
        )
        return TlsConfig(cert=cert, key=key)

    async def _watch(self, worker: Worker) -> None:
        code = await worker.proc.wait()
        if not self._stopping and self.on_failure is not None:
            self.on_failure(f"sink {self.name!r}: worker {worker.number} exited with {code}")

    async def stop(self) -> dict[str, Any]:
        """Stop the workers (journals closed) and return the combined final status."""
        self._stopping = True
        remove_private_dir(self._keys)
        self._keys = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.gather(*(w.stop() for w in self.workers))
        for task in self._watchers:
            task.cancel()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        finals = [w.final for w in self.workers if w.final is not None]
        self.final = combine(finals) if finals else None
        return self.final_status()

    def final_status(self) -> dict[str, Any]:
        """What `stop` gathered; zero counters if no worker could tell (all died)."""
        if self.final is not None:
            return self.final
        return {
            "name": self.name,
            "host": self.config.host,
            "port": self.port,
            "listening": False,
            "processes": self.config.processes,
            "counters": asdict(Counters()),
            "active": [],
            "workers": [],
        }

    # -- a timeline, sent ahead: each worker starts its faults on its own clock --------

    async def schedule(self, spec: FaultSpec, start_at: float) -> dict[str, Any]:
        """Send one fault ahead to every worker (as POST /faults would); the description
        they agree on. ValueError (one line) when they refuse it."""
        body = json.dumps(fault_body(spec, start_at=start_at)).encode()
        answers = [_json(a) for a in await self._all("POST", "/faults", body)]
        if any(not isinstance(a, dict) or "id" not in a for a in answers):
            said = next(a for a in answers if not isinstance(a, dict) or "id" not in a)
            why = said.get("error", said) if isinstance(said, dict) else said
            raise ValueError(f"sink {self.name!r} refused {spec.kind}: {why}")
        return dict(answers[0])

    async def fault(self, fault_id: str) -> dict[str, Any]:
        """One fault as worker 0 describes it; `state` says why when it cannot."""
        try:
            answer = _json(await self._call(self.workers[0], "GET", f"/faults/{fault_id}", b""))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"id": fault_id, "state": f"unknown: {exc or type(exc).__name__}"}
        if not isinstance(answer, dict) or "state" not in answer:
            return {"id": fault_id, "state": f"unknown: {answer}"}
        return answer

    # -- the control API: fan out to the workers' own ---------------------------------

    async def _start_control(self) -> None:
        app = web.Application(middlewares=[require_token(control_token())])
        app.router.add_get("/status", self._status)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._scrape)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.config.control_port, reuse_address=True)
        await site.start()
        self.control_port = self._runner.addresses[0][1]  # (host, port) of its one site

    async def _call(self, worker: Worker, method: str, path: str, body: bytes) -> web.Response:
        """The worker's answer to one request, to pass on as is."""
        assert worker.control is not None
        return _response(await worker.control.exchange(method, path, body))

    async def _all(self, method: str, path: str, body: bytes = b"") -> list[web.Response]:
        return await asyncio.gather(*(self._call(w, method, path, body) for w in self.workers))

    async def _status(self, request: web.Request) -> web.Response:
        answers = await self._all("GET", "/status")
        return web.json_response(combine([_json(a) for a in answers]))

    async def _scrape(self, request: web.Request) -> web.StreamResponse:
        """The workers' statuses, combined now, through this sink's own registry."""
        self._scraped = combine([_json(a) for a in await self._all("GET", "/status")])
        return await self._metrics(request)

    async def _health(self, request: web.Request) -> web.Response:
        listening = all(_json(a)["listening"] for a in await self._all("GET", "/health"))
        return web.json_response({"status": "ok", "name": self.name, "listening": listening})

    async def _forward(self, request: web.Request) -> web.Response:
        path = request.rel_url.path_qs
        if request.method == "GET":
            return await self._call(self.workers[0], "GET", path, b"")
        answers = await self._all(request.method, path, await request.read())
        if len({a.status for a in answers}) > 1:
            told = [
                {"worker": w.number, "status": a.status, "body": _json(a)}
                for w, a in zip(self.workers, answers, strict=True)
            ]
            return web.json_response(
                {"error": "the workers answered differently", "workers": told}, status=502
            )
        return answers[0]

    def ready(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.config.host,
            "port": self.port,
            "control_port": self.control_port,
            "journal_dir": str(self.journal_dir),
            "processes": self.config.processes,
        }


async def _send_spec(proc: asyncio.subprocess.Process, spec: WorkerSpec) -> None:
    """The worker's spec as one line on its stdin: a command line would show the sink's
    config, inline passwords included, to every user of the machine (`ps`)."""
    assert proc.stdin is not None
    proc.stdin.write(spec.model_dump_json().encode() + b"\n")
    with contextlib.suppress(ConnectionError):  # it died at once: `ready` tells
        await proc.stdin.drain()


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


def _json(response: web.Response) -> Any:
    assert isinstance(response.body, bytes)
    try:
        return json.loads(response.body)
    except ValueError:
        return response.body.decode("utf-8", "replace")
