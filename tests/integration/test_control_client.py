"""sinks.control_client against a real sink's control API on 127.0.0.1 port 0: typed
answers, and each failure as the error its caller decides by (refused with the sink's
reason and status, or no answer at all)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import aiohttp
import pytest

from sinks.config import EffectSpec, FaultSpec
from sinks.control_client import (
    ActiveFault,
    AsyncControlClient,
    ControlClient,
    ControlRefused,
    ControlUnreachable,
    fault_body,
)
from tests.helpers import connect_refused, wait_until

DOWN = EffectSpec.model_validate({"kind": "down"})


@pytest.fixture
def mx(start_sinks):
    return start_sinks({"sinks": [{"name": "mx"}]})


def test_a_fault_started_listed_and_stopped(mx):
    client = mx.client("mx")
    active = client.start_fault(DOWN)
    assert isinstance(active, ActiveFault)
    assert (active.kind, active.origin, active.probability, active.until) == (
        "down", "command", 1.0, None
    )  # fmt: skip
    assert connect_refused(mx.port("mx"))
    assert client.faults() == [active]
    assert client.health()["listening"] is False
    stopped = client.stop_fault(active.id)
    assert stopped == dataclasses.replace(active, state="ended", ended=stopped.ended)
    assert client.faults() == []
    assert client.health()["listening"] is True


def test_a_scheduled_fault_goes_as_its_spec_and_the_sink_ends_it():
    """The drill's form: a FaultSpec; `at` stays behind, the duration travels."""
    spec = FaultSpec.model_validate({"kind": "reject", "stage": "rcpt", "code": 550,
                                     "at": 12, "duration": 0.3, "probability": 0.5})  # fmt: skip
    assert fault_body(spec) == {"kind": "reject", "probability": 0.5, "stage": "rcpt",
                                "code": 550, "duration": 0.3}  # fmt: skip


def test_a_timed_fault_ends_on_its_own(mx):
    client = mx.client("mx")
    spec = FaultSpec.model_validate({"kind": "drop", "at": 0, "duration": 0.3})
    active = client.start_fault(spec)
    assert active.until is not None
    assert active.until == pytest.approx(active.started + 0.3, abs=0.01)
    assert wait_until(lambda: client.faults() == [], timeout=5)


def test_counters_and_status(mx):
    client = mx.client("mx")
    counters = client.counters()
    assert counters["sessions"] == 0
    assert all(isinstance(v, int) for v in counters.values())
    assert client.status()["name"] == "mx"
    assert client.relay_depth() is None, "not a backup MX"


def test_stop_faults_by_kind(mx):
    client = mx.client("mx")
    drop = client.start_fault(EffectSpec.model_validate({"kind": "drop"}))
    client.start_fault(EffectSpec.model_validate({"kind": "reject", "stage": "mail", "code": 550}))
    assert [f.kind for f in client.stop_faults("reject")] == ["reject"]
    assert client.faults() == [drop]
    assert [(f.id, f.state) for f in client.stop_faults()] == [(drop.id, "ended")]


def test_refused_carries_the_status_and_the_sinks_reason(mx):
    client = mx.client("mx")
    with pytest.raises(ControlRefused) as refused:
        client.stop_fault("down-99")
    assert refused.value.status == 404
    assert refused.value.reason == "no active fault 'down-99'"
    assert str(refused.value) == "HTTP 404 no active fault 'down-99'"
    # A request the client's types would not make: the sink's own check answers.
    with pytest.raises(ControlRefused) as refused:
        client.call("POST", "/faults", {"kind": "down", "duration": -1})
    assert refused.value.status == 400
    assert refused.value.reason.startswith("duration: ")


def test_a_wrong_token_is_refused_401(mx):
    client = ControlClient(mx.control_url("mx"), "not-the-token")
    with pytest.raises(ControlRefused) as refused:
        client.health()
    assert refused.value.status == 401
    assert "control token" in refused.value.reason


def test_a_route_that_does_not_exist_is_refused_with_the_http_reason(mx):
    with pytest.raises(ControlRefused) as refused:
        mx.client("mx").call("GET", "/nothing-here")
    assert refused.value.status == 404
    assert refused.value.reason == "Not Found"  # a text body: the reason phrase stands in


def test_exchange_returns_every_answer_as_it_came(mx):
    reply = mx.client("mx").exchange("DELETE", "/faults/nope-1")
    assert (reply.status, reply.json()) == (404, {"error": "no active fault 'nope-1'"})


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound and never listening: connections are refused, and no one else takes it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_nothing_listening_is_unreachable(closed_port):
    client = ControlClient.on_port(closed_port, "token")
    with pytest.raises(ControlUnreachable, match="refused"):
        client.start_fault(DOWN)


def test_no_answer_in_time_is_unreachable(silent_port):
    client = ControlClient.on_port(silent_port, "token", timeout=0.2)
    with pytest.raises(ControlUnreachable, match="timed out"):
        client.status()


def test_the_async_client_passes_answers_on_as_they_are(mx):
    async def both() -> tuple[int, bytes, int]:
        async with aiohttp.ClientSession() as session:
            client = AsyncControlClient(mx.control_url("mx"), mx.set.token, session)
            started = await client.exchange("POST", "/faults", b'{"kind": "drop"}')
            missing = await client.exchange("DELETE", "/faults/nope-2")
            return started.status, missing.body, len(started.json()["id"])

    status, body, id_length = mx.call(both())
    assert status == 201
    assert id_length > 0
    assert body == b'{"error": "no active fault \'nope-2\'"}'
