"""Real sinks on 127.0.0.1 port 0, run on an event loop in a background thread.

Tests talk to them with the standard library's smtplib, as a real sender would.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sinks.config import SinksFile, parse_config
from sinks.control_client import ControlClient
from sinks.runner import SinkSet
from sinks.sink import Sink
from tests.helpers import control

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with the most `slow` tests first, each file's tests still together and in order.

    Under `pytest -n 3 --dist loadfile` a worker takes whole files in this order: the long
    drills start at once and the quick files fill in around them, where in name order a
    long file could start last and run alone at the end.
    """
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


async def _settle() -> None:
    """What `asyncio.run` does before it closes its loop: cancel the tasks left (a control
    request still reading its body), then give closing transports the loop turns that
    finish their close. A transport dropped mid-close is collected later, in whatever
    test runs then, as an "unclosed transport" ResourceWarning that fails that test."""
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)


class RunningSinks:
    """A SinkSet served on its own loop thread; helpers to reach it from blocking tests."""

    def __init__(self, config: SinksFile, journal_dir: Path) -> None:
        self.journal_dir = journal_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.set = SinkSet(config, journal_dir)
        self.call(self.set.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def sink(self, name: str) -> Sink:
        return self.set[name]

    def port(self, name: str) -> int:
        return self.set[name].port

    def control_url(self, name: str, path: str = "") -> str:
        index = [s.name for s in self.set.sinks].index(name)
        return f"http://127.0.0.1:{self.set.controls[index].port}{path}"

    def control(self, name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return control(self.control_url(name, path), self.set.token, method, body)

    def client(self, name: str, timeout: float = 5.0) -> ControlClient:
        return ControlClient(self.control_url(name), self.set.token, timeout=timeout)

    def smtp(self, name: str, timeout: float = 5.0) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port(name), timeout=timeout)

    def close(self) -> None:
        if self.loop.is_closed():  # a test stopped these sinks itself
            return
        self.call(self.set.stop())
        self.call(_settle())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def start_sinks(tmp_path: Path) -> Iterator[Callable[..., RunningSinks]]:
    """start_sinks({'sinks': [...]}) -> RunningSinks; stopped after the test."""
    started: list[RunningSinks] = []

    def start(data: dict[str, Any], journal_dir: Path | None = None) -> RunningSinks:
        running = RunningSinks(parse_config(data), journal_dir or tmp_path / "journals")
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
