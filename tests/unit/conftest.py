"""The unit tier is pure: no network socket, no child process. A test that opens either
belongs in tests/integration; this makes it fail here instead of quietly slowing the tier.

Unix socket pairs stay allowed: every asyncio event loop makes one to wake itself up, and
a pure async test (an effect's start and stop) still runs in a loop."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest


class NotAUnitTest(AssertionError):
    pass


def _refuse(what: str) -> Any:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise NotAUnitTest(f"a unit test opened {what}: move it to tests/integration")

    return refuse


class _LocalOnlySocket(socket.socket):
    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
            raise NotAUnitTest("a unit test opened a network socket: move it to tests/integration")
        super().__init__(family, type, proto, fileno)


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "socket", _LocalOnlySocket)
    monkeypatch.setattr(socket, "create_connection", _refuse("a connection"))
    monkeypatch.setattr(subprocess, "Popen", _refuse("a child process"))
