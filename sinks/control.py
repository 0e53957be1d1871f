"""The control API of one sink: HTTP + JSON on loopback.

GET  /health                  liveness
GET  /status                  counters and active effects
GET  /kinds                   behaviours and faults this sink knows, with parameters
GET  /faults                  faults pending or in force (by schedule or command)
POST /faults                  {"kind": "down", "duration": 20, ...params} start one now;
                              with "start_at": EPOCH, hold it pending and start it then
GET  /faults/{id}             one fault, also one recently ended, cancelled or failed
DELETE /faults/{id}           stop one, or cancel it while pending;
                              DELETE /faults[?kind=K] stop and cancel all (of kind K)
GET  /behaviours              steady behaviours
POST /behaviours              add one;  PUT /behaviours/{id} replace;  DELETE /behaviours/{id}
GET  /metrics                 the sink's figures for Prometheus (`sinks.metrics`), no token

Every request but `/metrics` needs `Authorization: Bearer TOKEN`: the per-run token from
the environment variable MAILDRILL_CONTROL_TOKEN, or one made at start and printed in the
ready line. A process on the same machine that does not hold it cannot start faults or
change behaviours. `/metrics` is open, as a node exporter's is: it changes nothing, listens
on 127.0.0.1 only, tells counts (no address, message or secret), and a token that changes
with every run would have to be rewritten into Prometheus's scrape config each time.

A fault sent ahead runs on the sink's own clock (`sinks.host`): `start_at` is epoch seconds
on this machine; its window is `start_at` to `start_at + duration` (a `start_at` already
past starts it at once, while its window lasts; one more than 7 days ahead is refused).
Each fault is described with its `state`: pending, active, ended, cancelled or
`failed: WHY`, its planned `start_at` and the moment it `started` (null while pending).
Bad requests are 400 with `{"error": ONE LINE}`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import ValidationError

from maildrill import control_auth as auth
from maildrill.control_auth import control_token, json_error
from maildrill.inputs import describe_errors
from maildrill.numbers import MAX_DURATION_S, number_problem
from sinks.config import effect_request
from sinks.host import ActiveEffect, EffectHost
from sinks.metrics import registry_for

# A sink or a proxy: both take the same requests, each with its own kinds.
SINK_KEY = web.AppKey("sink", EffectHost)
# Read-only and on loopback: open to a scraper without the token (see the module's doc).
OPEN_PATHS = frozenset({"/metrics"})


def require_token(token: str) -> Any:
    """aiohttp middleware: 401 unless the request carries the run's token (a GET of
    OPEN_PATHS excepted)."""
    return auth.require_token(token, OPEN_PATHS)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body is not JSON"}', content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return data


async def _start(request: web.Request, origin: str) -> web.Response:
    sink = request.app[SINK_KEY]
    body = await _body(request)
    start_at = body.pop("start_at", None)
    if start_at is not None and origin == "behaviour":
        return json_error(400, "start_at: a behaviour starts now; schedule a fault instead")
    try:
        spec, duration = effect_request(body, sink.kinds)
        problem = None if start_at is None else start_at_problem(start_at, duration)
    except ValidationError as exc:
        return json_error(400, describe_errors(exc))
    except ValueError as exc:
        return json_error(400, str(exc))
    if problem:
        return json_error(400, problem)
    if start_at is not None:
        origin = "schedule"  # sent ahead: its journal rows say so
    active = await sink.add_effect(spec, origin=origin, duration=duration, start_at=start_at)
    return web.json_response(active.describe(), status=201)


def start_at_problem(start_at: Any, duration: float | None, now: float | None = None) -> str:
    """Why `start_at` (epoch seconds) cannot be scheduled, in one line; empty when it can."""
    if isinstance(start_at, bool) or not isinstance(start_at, int | float):
        return "start_at: must be a number (epoch seconds)"
    problem = number_problem(start_at, "start_at")
    if problem:
        return problem
    now = time.time() if now is None else now
    if start_at < 0:
        return "start_at: must be epoch seconds >= 0"
    if start_at > now + MAX_DURATION_S:
        return f"start_at: {start_at - now:.0f} s ahead; at most 7 days (604800 s)"
    if duration is not None and start_at + duration <= now:
        return f"start_at: its window ended {now - start_at - duration:.3f} s ago"
    return ""


def _listed(sink: EffectHost, steady: bool) -> list[ActiveEffect]:
    return [a for a in sink.effects.values() if (a.origin == "behaviour") == steady]


async def health(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    return web.json_response(
        {"status": "ok", "name": sink.name, "listening": sink.server is not None}
    )


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SINK_KEY].status())


async def kinds(request: web.Request) -> web.Response:
    return web.json_response(
        {
            name: {"summary": cls.summary, "params": cls.Params.model_json_schema()}
            for name, cls in sorted(request.app[SINK_KEY].kinds.items())
        }
    )


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response([a.describe() for a in _listed(request.app[SINK_KEY], False)])


async def start_fault(request: web.Request) -> web.Response:
    return await _start(request, "command")


async def get_fault(request: web.Request) -> web.Response:
    effect_id = request.match_info["id"]
    active = request.app[SINK_KEY].fault(effect_id)
    if active is None or active.origin == "behaviour":
        return json_error(404, f"no fault {effect_id!r}")
    return web.json_response(active.describe())


async def stop_fault(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    effect_id = request.match_info["id"]
    active = sink.effects.get(effect_id)
    if active is None or active.origin == "behaviour":
        return json_error(404, f"no active fault {effect_id!r}")
    await sink.remove_effect(effect_id)
    return web.json_response(active.describe())


async def stop_faults(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    kind = request.query.get("kind")
    stopped = []
    for active in _listed(sink, False):
        # Stopping one awaits its effect's stop; another may end by its timer meanwhile.
        if (kind is None or active.kind == kind) and active.id in sink.effects:
            await sink.remove_effect(active.id)
            stopped.append(active.describe())
    return web.json_response(stopped)


async def list_behaviours(request: web.Request) -> web.Response:
    return web.json_response([a.describe() for a in _listed(request.app[SINK_KEY], True)])


async def add_behaviour(request: web.Request) -> web.Response:
    return await _start(request, "behaviour")


async def replace_behaviour(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    effect_id = request.match_info["id"]
    old = sink.effects.get(effect_id)
    if old is None or old.origin != "behaviour":
        return json_error(404, f"no behaviour {effect_id!r}")
    try:
        spec, _ = effect_request(await _body(request), sink.kinds)
    except ValidationError as exc:
        return json_error(400, describe_errors(exc))
    except ValueError as exc:
        return json_error(400, str(exc))
    active = await sink.replace_effect(effect_id, spec)
    return web.json_response(active.describe())


async def remove_behaviour(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    effect_id = request.match_info["id"]
    active = sink.effects.get(effect_id)
    if active is None or active.origin != "behaviour":
        return json_error(404, f"no behaviour {effect_id!r}")
    await sink.remove_effect(effect_id)
    return web.json_response(active.describe())


def make_app(sink: EffectHost, token: str) -> web.Application:
    app = web.Application(middlewares=[require_token(token)])
    app[SINK_KEY] = sink
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/kinds", kinds)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", start_fault)
    app.router.add_delete("/faults", stop_faults)
    app.router.add_get("/faults/{id}", get_fault)
    app.router.add_delete("/faults/{id}", stop_fault)
    app.router.add_get("/behaviours", list_behaviours)
    app.router.add_post("/behaviours", add_behaviour)
    app.router.add_put("/behaviours/{id}", replace_behaviour)
    app.router.add_delete("/behaviours/{id}", remove_behaviour)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_for(sink.status)))
    return app


class ControlServer:
    """Runs one sink's (or proxy's) control app on 127.0.0.1 (never elsewhere)."""

    def __init__(self, sink: EffectHost, port: int = 0, token: str | None = None) -> None:
        self.sink = sink
        self.token = token or control_token()
        self.requested_port = port
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(make_app(self.sink, self.token), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.requested_port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]  # (host, port) of its one site

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
