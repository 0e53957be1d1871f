"""`maildrill worker --master HOST:PORT`: one Locust worker for a drill run elsewhere.

It needs only the installed package: the master sends the scenario (as run, real ports
filled in), the run id, t0 and this worker's share of the schedule (loadtest.locust_glue),
and the worker checks that scenario as its own (targets outside loopback only with
`allow_remote: true`) and against what it was started to allow (`--yes`,
`--allow-secrets`: loadtest.worker_consent). Its journal rows go back to the master;
nothing is written here.

Every wait is bounded. The master must answer within `--wait` seconds: first a TCP
connection to its port (so a wrong address is one line and exit 2, not Locust's five
minutes of retries), then Locust's own handshake, held to the same bound. Once running,
the worker stops when the master says so, when it has heard nothing from the master for
`locust_glue.MASTER_GONE_S`, or when the campaign's time is long over.

Exit codes: 0 the run ended as the master said, 1 the worker stopped on its own (the master
vanished), 2 bad input or a master that never answered or a plan it refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from loadtest.distributed import Endpoint
from loadtest.supervise import die_with_parent
from loadtest.worker_consent import SECRETS_ENV, YES_ENV

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Read by the locustfile in the worker (loadtest.locust_glue.bound_connect): how long
# Locust's handshake with the master may take, in seconds.
CONNECT_WAIT_ENV = "MAILDRILL_CONNECT_WAIT_S"
PROBE_EVERY_S = 0.5
CONNECT_TRIES_MAX = 50  # Locust's handshake tries (loadtest.locust_glue.bound_connect)
LOCUST_CONNECT_FAILED = 255  # Locust's exit (-1) when its handshake with the master fails


def connect_bounds(wait_s: float) -> tuple[float, int]:
    """Locust's handshake timeout and retry count for a wait of `wait_s` seconds. Locust
    retries by recursion (one frame per try), so the tries stay at most CONNECT_TRIES_MAX
    however long the wait: the timeout grows instead, never under a second."""
    if not math.isfinite(wait_s) or wait_s <= 0:
        raise ValueError(f"not a wait: {wait_s}")
    timeout = max(1.0, wait_s / CONNECT_TRIES_MAX)
    return timeout, max(1, math.ceil(wait_s / timeout))


def reach(master: Endpoint, wait_s: float) -> str | None:
    """Why no TCP connection to the master's port was made within `wait_s`, in one line
    (None: made). A master that is not up yet is waited for: workers may be started first;
    a name that does not resolve is said at once, without a wait it did not take."""
    deadline = time.monotonic() + wait_s
    why = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"no master answers at {master} within {wait_s:g} s ({why})"
        try:
            with socket.create_connection((master.host, master.port), timeout=min(left, 2.0)):
                return None
        except socket.gaierror as exc:
            return f"cannot find the master {master.host}: {exc.strerror or 'unknown host'}"
        except UnicodeError:  # the resolver's encoder: parse_endpoint should have said
            return f"cannot find the master {master.host}: not a host name"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        time.sleep(min(PROBE_EVERY_S, max(deadline - time.monotonic(), 0)))


def locust_command(master: Endpoint) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", master.host, "--master-port", str(master.port),
        # Failed SMTP attempts are what a drill measures, not the worker's failure.
        "--exit-code-on-error", "0",
    ]  # fmt: skip


def run(master: Endpoint, wait_s: float, *, yes: bool = False, secrets: bool = False) -> int:
    """`yes`, `secrets`: what this worker may run (loadtest.worker_consent)."""
    why = reach(master, wait_s)
    if why is not None:
        print(f"maildrill: {why}", file=sys.stderr)
        return 2
    print(f"maildrill: worker for the master at {master}", file=sys.stderr, flush=True)
    env = {
        **os.environ,
        CONNECT_WAIT_ENV: str(wait_s),
        YES_ENV: "1" if yes else "0",
        SECRETS_ENV: "1" if secrets else "0",
    }
    child = subprocess.Popen(locust_command(master), env=env, preexec_fn=die_with_parent)

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == LOCUST_CONNECT_FAILED:
        print(f"maildrill: the Locust master at {master} did not answer within {wait_s:g} s",
              file=sys.stderr)  # fmt: skip
        return 2
    if code < 0:
        return 128 - code  # killed by a signal, as a shell reports it
    return code
