"""The run's control token, as every control API checks it: the sinks' and proxies'
(`sinks.control`, their workers' in `sinks.multiprocess`) and the run's DNS server's
(`maildrill.dns.control`). One token per run, by environment, so processes started later
inherit it; a request without it gets a 401 in the APIs' JSON error shape."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Collection
from typing import Any

from aiohttp import web

TOKEN_ENV = "MAILDRILL_CONTROL_TOKEN"


def control_token() -> str:
    """This run's token: from the environment, else made now and put there, so that worker
    processes started later inherit the same one."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = os.environ[TOKEN_ENV] = secrets.token_urlsafe(18)
    return token


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def json_error(status: int, message: str) -> web.Response:
    """A control API's error: `{"error": MESSAGE}` with its status."""
    return web.json_response({"error": message}, status=status)


def require_token(token: str, open_paths: Collection[str] = ()) -> Any:
    """aiohttp middleware: 401 unless the request carries the run's token (a GET of one of
    `open_paths`, read-only, excepted)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and request.path in open_paths:
            opened: web.StreamResponse = await handler(request)
            return opened
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return json_error(401, "missing or wrong control token (Authorization: Bearer ...)")
        response: web.StreamResponse = await handler(request)
        return response

    return check
