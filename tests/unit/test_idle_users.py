"""One idle user watches for the next due message; the others wait until a ticket is taken."""

from __future__ import annotations

import gevent

from loadtest.idle_users import IdleUsers


def _nap(idle: IdleUsers, name: str, due_in: float, at_most: float, woke: list[str]) -> None:
    idle.wait(due_in, at_most)
    woke.append(name)


def test_one_user_watches_the_others_wait_without_a_timer_until_a_ticket_is_taken() -> None:
    idle, woke = IdleUsers(), []
    watcher = gevent.spawn(_nap, idle, "watcher", 0.05, 5.0, woke)
    gevent.sleep(0)
    waiters = [gevent.spawn(_nap, idle, f"w{i}", 0.05, 5.0, woke) for i in range(3)]
    gevent.sleep(0)
    assert idle.watching
    idle.taken()  # a busy user took a ticket while one watches: no one is woken
    watcher.join(timeout=2)
    gevent.sleep(0.1)  # past the due time the waiters were told: still waiting
    assert woke == ["watcher"]
    idle.taken()  # the watcher took its ticket: the first waiter is woken, the rest wait
    gevent.sleep(0)
    assert woke == ["watcher", "w0"]
    idle.taken()
    idle.taken()
    gevent.joinall(waiters, timeout=2)
    assert woke == ["watcher", "w0", "w1", "w2"]


def test_a_waiter_is_bounded_and_leaves_the_line_when_its_time_is_up() -> None:
    idle, woke = IdleUsers(), []
    watcher = gevent.spawn(_nap, idle, "watcher", 5.0, 0.3, woke)
    gevent.sleep(0)
    waiter = gevent.spawn(_nap, idle, "waiter", 5.0, 0.05, woke)
    waiter.join(timeout=2)
    assert woke == ["waiter"]  # at most its bound, though no ticket was taken
    watcher.join(timeout=2)
    assert woke == ["waiter", "watcher"]  # the watcher's bound too (the caller's IDLE_S)
    assert not idle.watching
    idle.taken()  # no one waits: nothing to wake, nothing left behind
    gevent.sleep(0)
    assert woke == ["waiter", "watcher"]


def test_a_killed_watcher_leaves_the_watch_to_the_next() -> None:
    idle, woke = IdleUsers(), []
    watcher = gevent.spawn(_nap, idle, "watcher", 5.0, 5.0, woke)
    gevent.sleep(0)
    watcher.kill()
    assert not idle.watching
    nxt = gevent.spawn(_nap, idle, "next", 0.01, 5.0, woke)
    nxt.join(timeout=2)
    assert woke == ["next"]  # it watched (and slept its due time), not waited for a wake
