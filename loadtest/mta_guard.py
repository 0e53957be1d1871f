"""A guard per Postfix instance, so that a maildrill killed with SIGKILL leaves none running.

`postfix start` puts its master daemon in the background, a child of init rather than of
maildrill, where PR_SET_PDEATHSIG (supervise.die_with_parent) cannot reach it: a killed
maildrill would leave the instance listening and delivering. The guard is maildrill's own
child, so it does get that signal: a small Python process that waits for SIGTERM (maildrill
died) and then runs `postfix stop`, or for SIGUSR1 (maildrill stopped the instance itself)
and leaves. It blocks both before it says it is ready, so no signal is lost in between.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from loadtest.supervise import Child, Supervisor

ROLE = "guard"
READY = "ready"

# argv: the postfix binary, the instance's config directory.
_GUARD = f"""
import signal, subprocess, sys
signals = {{signal.SIGTERM, signal.SIGUSR1}}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
print({READY!r}, flush=True)
if signal.sigwait(signals) == signal.SIGTERM:
    subprocess.run([sys.argv[1], "-c", sys.argv[2], "stop"], timeout=60, check=False)
"""


class GuardError(Exception):
    """The guard did not start: the instance must not start unguarded."""


def start_guard(children: Supervisor, name: str, postfix: str, config_dir: Path) -> Child:
    """The guard of Postfix instance `name`, ready (its signals blocked) when this returns."""
    child = children.spawn(
        ROLE,
        f"guard-{name}",
        [sys.executable, "-I", "-S", "-c", _GUARD, postfix, str(config_dir)],
        stdout=subprocess.PIPE,
    )
    assert child.proc.stdout is not None
    said = child.proc.stdout.readline().strip()
    child.proc.stdout.close()
    if said != READY:
        child.stop(signal.SIGKILL, 5)
        raise GuardError(f"postfix {name}: its guard did not start ({child.last_log_line()})")
    return child


def stand_down(guard: Child, grace: float = 5.0) -> None:
    """maildrill stopped the instance itself: the guard leaves without touching it."""
    guard.stop(signal.SIGUSR1, grace)
