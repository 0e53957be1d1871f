"""A client of a sink's control API (`sinks.control`): the one way code here talks to it.

A fault travels as the spec the sink validates (`EffectSpec`, or a scheduled `FaultSpec`
whose `at` stays behind): `fault_body` is its only JSON form. Sent ahead, it carries its
`start_at` (epoch seconds) and the sink starts it on its own clock.

Errors, as httpx arranges them: ControlError is the root; ControlRefused is an answer
other than 2xx, with the HTTP status and the API's one-line `{"error": ...}` reason on it;
ControlUnreachable is no usable answer at all (refused connection, timeout, a body that is
not JSON), its text the underlying error's.

`ControlClient` blocks (the orchestrator, tests); `AsyncControlClient` runs on an event
loop and passes answers on as they are (the multi-process sink's fan-out to its workers).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp

from maildrill.control_auth import auth_header
from sinks.config import EffectSpec, FaultSpec

__all__ = [
    "ActiveFault",
    "AsyncControlClient",
    "ControlClient",
    "ControlError",
    "ControlRefused",
    "ControlUnreachable",
    "Reply",
    "fault_body",
]

_REASON_MAX = 300


class ControlError(Exception):
    """The control API did not do what was asked."""


class ControlRefused(ControlError):
    """An answer other than 2xx: `status`, and `reason` (the API's `error`, one line)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


class ControlUnreachable(ControlError):
    """No usable answer: the text is the underlying error's (connection, timeout, JSON)."""


@dataclass(frozen=True)
class Reply:
    """One answer as it came: status, body bytes, content type."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def json(self) -> Any:
        """The body as JSON; ControlUnreachable when it is not."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ControlUnreachable(str(exc)) from exc

    def reason(self, phrase: str = "") -> str:
        """The API's `{"error": ...}` in one line, else `phrase` (the HTTP reason)."""
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            data = {}
        said = data.get("error") if isinstance(data, dict) else None
        return " ".join(str(said or phrase).split())[:_REASON_MAX]


def _epoch(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ActiveFault:
    """A fault as the API describes it (`sinks.host.ActiveEffect.describe`): `state`
    pending, active, ended, cancelled or `failed: WHY`; `start_at` its planned start,
    `started` the moment the sink journaled it in force (None while pending)."""

    id: str
    kind: str
    origin: str
    probability: float
    params: dict[str, Any]
    state: str
    start_at: float
    started: float | None
    until: float | None
    ended: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> ActiveFault:
        try:
            return cls(
                id=str(data["id"]),
                kind=str(data["kind"]),
                origin=str(data["origin"]),
                probability=float(data["probability"]),
                params=dict(data["params"]),
                state=str(data["state"]),
                start_at=float(data["start_at"]),
                started=_epoch(data["started"]),
                until=_epoch(data["until"]),
                ended=_epoch(data.get("ended")),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ControlUnreachable(f"not an active fault: {exc!r}") from exc


def fault_body(
    spec: EffectSpec, duration: float | None = None, start_at: float | None = None
) -> dict[str, Any]:
    """The request that starts `spec`: kind, probability, the kind's own parameters,
    `duration` (a FaultSpec's own, unless given) and `start_at` (epoch seconds; none: now).
    A FaultSpec's `at` is the sender's business: it is relative to the sender's t0."""
    if duration is None and isinstance(spec, FaultSpec):
        duration = spec.duration
    body: dict[str, Any] = {"kind": spec.kind, "probability": spec.probability, **spec.params}
    if duration is not None:
        body["duration"] = duration
    if start_at is not None:
        body["start_at"] = start_at
    return body


def _headers(token: str, body: bytes | None) -> dict[str, str]:
    headers = auth_header(token)
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def _encode(body: Any) -> bytes | None:
    return None if body is None else json.dumps(body).encode()


class ControlClient:
    """Blocking calls to one control API at `base_url` (http://127.0.0.1:PORT)."""

    def __init__(self, base_url: str, token: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def on_port(cls, port: int, token: str, timeout: float = 2.0) -> ControlClient:
        return cls(f"http://127.0.0.1:{port}", token, timeout)

    # -- typed calls ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self.call("GET", "/health"))

    def status(self) -> dict[str, Any]:
        """Counters, active effects and what the sink's mode adds (a backup MX's `relay`)."""
        return dict(self.call("GET", "/status"))

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.status()["counters"].items()}

    def relay_depth(self) -> int | None:
        """Messages a backup MX still holds for its upstream (None: not a backup MX)."""
        relay = self.status().get("relay")
        return None if not isinstance(relay, dict) else int(relay["depth"])

    def faults(self) -> list[ActiveFault]:
        return [ActiveFault.from_json(f) for f in self.call("GET", "/faults")]

    def start_fault(
        self, spec: EffectSpec, duration: float | None = None, start_at: float | None = None
    ) -> ActiveFault:
        """Start `spec` now, or at `start_at` (epoch seconds) on the sink's clock, for
        `duration` s (or a FaultSpec's own); ControlRefused with the sink's reason when it
        will not."""
        body = fault_body(spec, duration, start_at)
        return ActiveFault.from_json(self.call("POST", "/faults", body))

    def fault(self, fault_id: str) -> ActiveFault:
        """One fault in any state (pending, active, or recently over)."""
        return ActiveFault.from_json(self.call("GET", f"/faults/{fault_id}"))

    def stop_fault(self, fault_id: str) -> ActiveFault:
        return ActiveFault.from_json(self.call("DELETE", f"/faults/{fault_id}"))

    def stop_faults(self, kind: str | None = None) -> list[ActiveFault]:
        path = "/faults" if kind is None else f"/faults?kind={kind}"
        return [ActiveFault.from_json(f) for f in self.call("DELETE", path)]

    # -- any route --------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a 2xx; ControlRefused or ControlUnreachable otherwise."""
        reply, phrase = self._send(method, path, body)
        if not 200 <= reply.status < 300:
            raise ControlRefused(reply.status, reply.reason(phrase))
        return reply.json()

    def exchange(self, method: str, path: str, body: Any = None) -> Reply:
        """The answer whatever its status (for tests of the API itself); ControlUnreachable
        only when there is none."""
        return self._send(method, path, body)[0]

    def _send(self, method: str, path: str, body: Any) -> tuple[Reply, str]:
        data = _encode(body)
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=_headers(self.token, data)
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Reply(answer.status, answer.read(), answer.headers.get_content_type()), ""
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read()
            except OSError:
                text = b""
            return Reply(exc.code, text, exc.headers.get_content_type()), str(exc.reason)
        except OSError as exc:  # URLError, a timeout, a reset
            raise ControlUnreachable(str(exc)) from exc


class AsyncControlClient:
    """The same API from an event loop, over a shared aiohttp session."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session

    async def exchange(self, method: str, path: str, body: bytes = b"") -> Reply:
        """The answer whatever its status, body bytes as sent (to pass on as is)."""
        async with self.session.request(
            method,
            self.base_url + path,
            data=body or None,
            headers=_headers(self.token, body),
        ) as answer:
            return Reply(answer.status, await answer.read(), answer.content_type)
