"""What a scenario may ask for: fixed limits, and what this machine can hold.

A scenario that validates must be able to run. The fixed limits are generous (far past
any drill or capacity run of one machine) and keep every count, size and time in a range
the code computes with (with maildrill.numbers: every number finite and at most 2^53, every
time span at most 7 days); the machine checks compare a scenario's connections and messages
in flight with the open-file limit and the memory available here. README: Scenario limits.
"""

from __future__ import annotations

import contextlib
import math
import resource
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Protocol

MAX_RATE = 100_000  # msgs/s of a stage: far past what one machine sends over SMTP
MAX_MESSAGES = 10_000_000  # planned messages: the analysis holds every attempt in memory
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a message's size, and an attachment's
MAX_RECIPIENTS = 1000  # per message: Postfix's smtpd_recipient_limit, the sinks' default
MAX_USERS = 10_000  # concurrent SMTP connections (Locust users)
MAX_WORKERS = 64  # Locust worker processes
MAX_ATTEMPTS = 1000  # tries per message

# Each user's message exists about this many times while it is sent: the client's bytes,
# smtplib's dot-stuffed copy, the sink's lines and their join.
COPIES_IN_FLIGHT = 4
PROCESS_BYTES = 100 * 1024 * 1024  # a Locust process before any message
RESERVED_FILES = 256  # open files a process needs besides its SMTP connections


class StreamSizes(Protocol):
    """Of a scenario's message stream, what its memory need depends on."""

    @property
    def size_max(self) -> int: ...
    @property
    def attachment_size(self) -> int: ...
    @property
    def attachment_share(self) -> float: ...


class Campaign(Protocol):
    @property
    def streams(self) -> Sequence[StreamSizes]: ...


class Load(Protocol):
    """What the machine checks read of a scenario (`loadtest.scenario.Scenario`).

    A protocol, not the class: the scenario imports this module's limits to validate
    itself, so this module must not import the scenario.
    """

    @property
    def users(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def servers(self) -> Sized: ...
    @property
    def campaign(self) -> Campaign: ...


def machine_problem(scenario: Load) -> str | None:
    """Why this machine cannot run the scenario, in one line; None when it can."""
    return _open_files_problem(scenario) or _memory_problem(scenario)


def _open_files_problem(scenario: Load) -> str | None:
    """A user keeps one connection per server; a sink holds one per user (a proxy two)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return None
    per_process = math.ceil(scenario.users / max(1, scenario.workers))
    load = per_process * len(scenario.servers)
    sink = 2 * scenario.users
    need = max(load, sink) + RESERVED_FILES
    if need <= hard:
        return None
    return (
        f"users: {scenario.users} users need about {need} open files in one process "
        f"({len(scenario.servers)} servers each), more than this machine's limit of {hard} "
        "(ulimit -Hn)"
    )


def largest_message(scenario: Load) -> int:
    """The largest message the campaign can make, bytes (an attachment grows by base64)."""
    return max(
        max(s.size_max, s.attachment_size * 4 // 3 + 4096 if s.attachment_share else 0)
        for s in scenario.campaign.streams
    )


def _memory_problem(scenario: Load) -> str | None:
    available = available_memory()
    if available is None:
        return None
    processes = max(1, scenario.workers)
    # Each process builds each stream's filler text and attachment once.
    templates = sum(s.size_max + s.attachment_size * 2 for s in scenario.campaign.streams)
    in_flight = COPIES_IN_FLIGHT * scenario.users * largest_message(scenario)
    need = in_flight + processes * (templates + PROCESS_BYTES)
    if need <= available:
        return None
    mb = 1024 * 1024
    return (
        f"users: {scenario.users} users sending messages of up to "
        f"{largest_message(scenario) / mb:.1f} MB need about {need / mb:,.0f} MB of memory, "
        f"more than the {available / mb:,.0f} MB this machine has available"
    )


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory available for new work (Linux MemAvailable); None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def raise_open_files_limit() -> None:
    """Lift this process's soft open-file limit to its hard one, for the children to
    inherit: a sink holding a connection per user would otherwise stop at 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
