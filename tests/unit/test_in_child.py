"""in_child.call: the work is done in a forked child and its result pickled back; a child
that fails leaves the work to this process, so its error shows here."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from loadtest.analysis import in_child


@pytest.fixture
def forkable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork is allowed whatever threads an earlier test in this worker left running (a
    sink's daemon thread): whether it should be is `may_fork`'s test, below."""
    monkeypatch.setattr(in_child, "may_fork", lambda: True)


@pytest.mark.usefixtures("forkable")
def test_the_work_is_done_in_a_child_and_its_result_comes_back() -> None:
    parent = os.getpid()
    pid, values = in_child.call(lambda: (os.getpid(), list(range(5))))
    assert pid != parent
    assert values == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("forkable")
def test_a_child_that_fails_leaves_the_work_to_this_process() -> None:
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            raise MemoryError("the child ran out")
        return 7

    assert in_child.call(work) == 7


@pytest.mark.usefixtures("forkable")
def test_an_error_of_the_work_itself_shows_here() -> None:
    def work() -> int:
        raise ValueError("a damaged partition")

    with pytest.raises(ValueError, match="a damaged partition"):
        in_child.call(work)


def test_no_child_while_another_thread_runs() -> None:
    parent = os.getpid()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not in_child.may_fork()
        assert in_child.call(os.getpid) == parent
    finally:
        release.set()
        other.join()


@pytest.mark.usefixtures("forkable")
def test_a_child_killed_by_a_signal_is_named_not_redone_here() -> None:
    """The out-of-memory killer's SIGKILL: this process, holding more, would only be
    killed in turn, without a word."""
    parent = os.getpid()
    done_here: list[int] = []

    def work() -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        done_here.append(1)
        return 7

    with pytest.raises(in_child.ChildKilled, match=r"signal 9 \(out of memory") as killed:
        in_child.call(work)
    assert killed.value.signal_number == signal.SIGKILL
    assert done_here == []


@pytest.mark.usefixtures("forkable")
def test_an_interrupted_wait_ends_and_reaps_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the child works: the child is killed and reaped, not left a zombie."""
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:  # the parent: interrupted while it waits (a timer is not inherited)
            children.append(pid)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
        return pid

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    monkeypatch.setattr(in_child.os, "fork", fork)
    try:
        with pytest.raises(KeyboardInterrupt):
            in_child.call(lambda: time.sleep(60))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(children) == 1
    with pytest.raises(ChildProcessError):  # reaped already
        os.waitpid(children[0], os.WNOHANG)
