"""The idle users of one Locust process: one watches for the next due message, the rest wait.

A user with nothing due used to sleep until the next message was due, every idle user the
same: when it came due they all woke, one took it, and the others computed the next wait
and slept again, a wake-up per idle user per message (at 2,000 msgs/s and 20 users, most
of them idle: a timer and a trip through Locust's task loop each, per message). Here one
idle user (the watcher) sleeps until the next due time; the others wait without a timer
until a user takes a ticket while no one watches (`taken`), which wakes one of them (first
come, first woken) to watch or take the next. Messages due together are taken one after
another, each taker waking the next, as fast as before; each wait is still bounded by the
caller (IDLE_S), so a watcher that is killed leaves no one waiting for long.
"""

from __future__ import annotations

from collections import deque

import gevent
from gevent.event import Event


class IdleUsers:
    def __init__(self) -> None:
        self.watching = False
        self._waiting: deque[Event] = deque()

    def wait(self, due_in: float, at_most: float) -> None:
        """Nap until the next message is due in `due_in` s (no longer than `at_most`), if
        no one watches for it; else until woken (or `at_most`)."""
        if not self.watching:
            self.watching = True
            try:
                gevent.sleep(min(due_in, at_most))
            finally:
                self.watching = False
            return
        turn = Event()
        self._waiting.append(turn)
        try:
            turn.wait(at_most)
        finally:
            if not turn.is_set():
                self._waiting.remove(turn)

    def taken(self) -> None:
        """A user took a ticket: with no one watching now, one waiting user is woken to."""
        if not self.watching and self._waiting:
            self._waiting.popleft().set()
