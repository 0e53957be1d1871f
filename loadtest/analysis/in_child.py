"""Work that makes much memory and hands back little, done in a forked child (`call`).

A run read a partition of its messages at a time (loadtest.analysis.partitions) makes
each partition's frames, counts them and keeps only the counts. In one process, what the
frames were leaves the heap in pieces the next partition cannot always reuse (text objects
of ten million message ids, freed among objects that live on): the process grew by
about 100 MB a partition on a 10 M attempt run (issue 18). A child that reads one
partition, pickles its counts back through a pipe and exits gives every byte back to
the system, so the report's peak is one partition's, whatever the run's length.

The child forks only from a process with no other Python thread: a lock another thread
held at the fork (a stream's, a library's) would stay held in the child forever. (Native
pools are not seen: numpy's BLAS keeps one, and resets it at a fork itself.) Without a
fork (a system without it, another thread running), or when the child raises, the work
is done in this process, so any error shows as it would have without a child. A child
killed by a signal is not redone here: the kernel's out-of-memory killer is the likely
one, and this process, which holds more, would only be killed in turn, with no word;
`ChildKilled` says what happened instead. Interrupted (Ctrl-C), this process ends its
child and reaps it before the interruption goes on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ChildKilled(RuntimeError):
    """The child doing the work was killed by a signal (most likely out of memory)."""

    def __init__(self, signal_number: int) -> None:
        why = " (out of memory?)" if signal_number == signal.SIGKILL else ""
        super().__init__(f"the analysis' child process was killed by signal {signal_number}{why}")
        self.signal_number = signal_number


def may_fork() -> bool:
    """Whether a forked child can do work here: fork exists, and no other thread runs."""
    return hasattr(os, "fork") and threading.active_count() == 1


def call(work: Callable[[], T]) -> T:
    """`work()`, done in a forked child when one may be (its result pickled back)."""
    if not may_fork():
        return work()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no memory or process left for a child: done here
        os.close(read_end)
        os.close(write_end)
        return work()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        code = 1
        try:
            data = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent does the work itself and shows why
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    status: int | None = None
    try:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        status = os.waitpid(pid, 0)[1]
    finally:
        if status is None:  # interrupted: the child is ended and reaped, not left a zombie
            _end(pid)
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and data:
        result: T = pickle.loads(data)
        return result
    if code < 0:
        raise ChildKilled(-code)
    return work()


def _end(pid: int) -> None:
    """Kill and reap a child not yet reaped (its pid cannot have been reused)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
