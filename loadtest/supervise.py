"""The processes a drill starts: each in a session of its own, dying with maildrill.

A child in its own session does not get the terminal's Ctrl-C: maildrill alone does, and
stops them in an order that lets the last attempts find their servers. PR_SET_PDEATHSIG
sends a child SIGTERM when maildrill dies, so nothing is left behind even after SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from maildrill.paths import inside


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when maildrill dies, and a session of its own."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    role: str  # sink, locust, worker, prober
    name: str
    proc: subprocess.Popen[str]
    log: TextIO
    log_path: Path
    died_at: float | None = None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, sig: int | None, grace: float) -> int | None:
        """Signal (unless already done), give it `grace` seconds, then insist: a second
        signal too soon would cut short what the first one asked it to finish."""
        if sig is not None:
            self.signal(sig)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(5)
        finally:
            self.log.close()

    def last_log_line(self) -> str | None:
        lines = self.log_path.read_text().strip().splitlines()
        return lines[-1] if lines else None


class Supervisor:
    """A run's children, in the order they were started; each logs to logs/NAME.log."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[Child] = []

    def spawn(
        self,
        role: str,
        name: str,
        cmd: list[str],
        *,
        stdout: Any = None,
        env: Mapping[str, str] | None = None,
        user: tuple[int, int] | None = None,
    ) -> Child:
        """Start `cmd`; `env` adds to maildrill's environment (a secret never goes on a
        command line, where every user of the machine reads it). `user` (uid, gid): run it
        as that user from the start, rather than let it drop to the user itself: Linux
        clears PR_SET_PDEATHSIG when a process changes its credentials, so a daemon that
        drops privileges would outlive a maildrill killed with SIGKILL. Python sets the
        user before `die_with_parent` runs, so the signal is set for the user it keeps."""
        log_path = inside(self.run_dir, "logs", f"{name}.log")
        log = log_path.open("w")
        proc = subprocess.Popen(
            cmd,
            env=None if env is None else {**os.environ, **env},
            stdout=stdout if stdout is not None else log,
            stderr=log,
            text=True,
            preexec_fn=die_with_parent,  # no threads yet at spawn time
            user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [],
        )
        child = Child(role, name, proc, log, log_path)
        self.children.append(child)
        return child

    def of(self, *roles: str) -> list[Child]:
        return [c for c in self.children if c.role in roles]

    def newly_dead(self, now: float) -> list[tuple[Child, int]]:
        """Children found dead since the last look, with their exit codes. Not Locust's
        master (its end is the run's), nor a worker leaving with 0 (told to at the end)."""
        dead = []
        for child in self.children:
            if child.role == "locust" or child.died_at is not None:
                continue
            code = child.proc.poll()
            if code is not None and (child.role == "sink" or code != 0):
                child.died_at = now
                dead.append((child, code))
        return dead

    def stop(self, role: str, sig: int, grace: float) -> None:
        for child in self.of(role):
            child.stop(sig, grace)
