"""The control API of the run's DNS server: HTTP + JSON on 127.0.0.1, as a sink's is.

GET    /health         liveness
GET    /kinds          the DNS fault kinds, with their parameters
GET    /faults         faults pending or in force
POST   /faults         {"kind": "servfail", "duration": 20, "names": [...]} start one now;
                       with "start_at": EPOCH, hold it pending and start it then
GET    /faults/{id}    one fault, also one recently ended or cancelled
DELETE /faults/{id}    stop one, or cancel it while pending; DELETE /faults: all

The same requests, answers and token as a sink's control API (`sinks.control`, which this
package may not import: `maildrill` imports neither half; the token check both use is
`maildrill.control_auth`): `Authorization: Bearer TOKEN`, the run's token from
MAILDRILL_CONTROL_TOKEN; a fault described with its `state`
(pending, active, ended, cancelled), `start_at`, `started`, `until`, `ended`; bad
requests 400 with `{"error": ONE LINE}`. So the orchestrator schedules and follows DNS
faults with the client it uses for sinks (`sinks.control_client`).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from maildrill.control_auth import json_error, require_token
from maildrill.dns.board import FaultBoard
from maildrill.dns.faults import KINDS
from maildrill.inputs import describe_errors
from maildrill.numbers import MAX_DURATION_S, number_problem

BOARD_KEY = web.AppKey("board", FaultBoard)


def _number(value: Any, name: str, *, positive: bool = True) -> str:
    """Why `value` is not a number of seconds `name` may be, in one line; empty if it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name}: must be a number"
    problem = number_problem(value, name)
    if problem:
        return problem
    if positive and value <= 0:
        return f"{name}: must be > 0"
    if not positive and value < 0:
        return f"{name}: must be >= 0"
    return ""


def request_problem(body: dict[str, Any], now: float) -> str:
    """Why the request's `duration`, `probability` and `start_at` will not do; empty if
    they will (the kind's own parameters are the fault's to check)."""
    duration, start_at = body.get("duration"), body.get("start_at")
    probability = body.get("probability", 1.0)
    if duration is not None:
        problem = _number(duration, "duration")
        if problem or duration > MAX_DURATION_S:
            return problem or "duration: at most 7 days (604800 s)"
    problem = _number(probability, "probability")
    if problem or probability > 1:
        return problem or "probability: at most 1"
    if start_at is not None:
        problem = _number(start_at, "start_at", positive=False)
        if problem:
            return problem
        if start_at > now + MAX_DURATION_S:
            return f"start_at: {start_at - now:.0f} s ahead; at most 7 days (604800 s)"
        if duration is not None and start_at + duration <= now:
            return f"start_at: its window ended {now - start_at - duration:.3f} s ago"
    return ""


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "name": "dns"})


async def kinds(request: web.Request) -> web.Response:
    return web.json_response(
        {
            name: {"summary": cls.summary, "params": cls.Params.model_json_schema()}
            for name, cls in sorted(KINDS.items())
        }
    )


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response([a.describe() for a in request.app[BOARD_KEY].faults.values()])


async def start_fault(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return json_error(400, "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        return json_error(400, 'body must be a JSON object with a "kind"')
    problem = request_problem(body, time.time())
    if problem:
        return json_error(400, problem)
    kind = body.pop("kind")
    duration, start_at = body.pop("duration", None), body.pop("start_at", None)
    probability = body.pop("probability", 1.0)
    try:
        active = request.app[BOARD_KEY].add(
            kind, body, probability=probability, duration=duration, start_at=start_at
        )
    except ValidationError as exc:
        return json_error(400, f"{kind}: {describe_errors(exc)}")
    except ValueError as exc:
        return json_error(400, str(exc))
    return web.json_response(active.describe(), status=201)


async def get_fault(request: web.Request) -> web.Response:
    fault_id = request.match_info["id"]
    active = request.app[BOARD_KEY].fault(fault_id)
    if active is None:
        return json_error(404, f"no fault {fault_id!r}")
    return web.json_response(active.describe())


async def stop_fault(request: web.Request) -> web.Response:
    fault_id = request.match_info["id"]
    active = request.app[BOARD_KEY].remove(fault_id)
    if active is None:
        return json_error(404, f"no active fault {fault_id!r}")
    return web.json_response(active.describe())


async def stop_faults(request: web.Request) -> web.Response:
    board = request.app[BOARD_KEY]
    stopped = [board.remove(fault_id) for fault_id in list(board.faults)]
    return web.json_response([a.describe() for a in stopped if a is not None])


def make_app(board: FaultBoard, token: str) -> web.Application:
    app = web.Application(middlewares=[require_token(token)])
    app[BOARD_KEY] = board
    app.router.add_get("/health", health)
    app.router.add_get("/kinds", kinds)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", start_fault)
    app.router.add_delete("/faults", stop_faults)
    app.router.add_get("/faults/{id}", get_fault)
    app.router.add_delete("/faults/{id}", stop_fault)
    return app


class ControlServer:
    """The DNS server's control app on 127.0.0.1 (never elsewhere), port 0: a free one."""

    def __init__(self, board: FaultBoard, token: str, port: int = 0) -> None:
        self.board = board
        self.token = token
        self.requested_port = port
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        self._runner = web.AppRunner(make_app(self.board, self.token), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.requested_port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
