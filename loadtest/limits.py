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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MAX_RATE = 100_000  # msgs/s of a stage: far past what one machine sends over SMTP
MAX_MESSAGES = 10_000_000  # planned messages: the analysis holds every attempt in memory
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a message's size, and an attachment's
MAX_RECIPIENTS = 1000  # per message: Postfix's smtpd_recipient_limit, the sinks' default
MAX_USERS = 10_000  # concurrent SMTP connections (Locust users)
MAX_WORKERS = 64  # Locust worker processes
MAX_ATTEMPTS = 1000  # tries per message

# Each user's message exists about this many times while it is sent: the client's bytes
# and smtplib's dot-stuffed copy in the sender, the sink's lines and their join.
SENDER_COPIES = 2
SINK_COPIES = 2
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


@dataclass(frozen=True)
class Here:
    """What of a run this machine holds. A run on one machine holds all of it; the master
    of workers on other hosts (`maildrill run --master-bind`) holds the sinks and sends
    nothing; a `maildrill worker` holds its share of the users and no sink. Checking the
    whole run on each would refuse a run that fits because it is spread."""

    processes: int  # Locust processes that send mail here
    users: int  # users whose connections and messages in flight are here
    sinks: bool  # the run's sinks run here (a connection and the messages of every user)


def whole_run(scenario: Load) -> Here:
    return Here(processes=max(1, scenario.workers), users=scenario.users, sinks=True)


def master_of_remote_workers() -> Here:
    return Here(processes=0, users=0, sinks=True)


def worker_share(scenario: Load, workers: int) -> Here:
    """One of `workers` Locust workers: Locust spreads the users evenly over them."""
    return Here(processes=1, users=math.ceil(scenario.users / max(1, workers)), sinks=False)


def machine_problem(scenario: Load, here: Here | None = None) -> str | None:
    """Why this machine cannot run its part of the scenario (all of it unless `here` says
    otherwise), in one line; None when it can."""
    part = here or whole_run(scenario)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = None if hard == resource.RLIM_INFINITY else hard
    return open_files_problem(scenario, part, limit) or memory_problem(
        scenario, part, available_memory()
    )


def open_files_problem(scenario: Load, here: Here, hard: int | None) -> str | None:
    """A user keeps one connection per server; a sink holds one per user (a proxy two).
    `hard`: the hard open-file limit (ulimit -Hn), None when unlimited."""
    if hard is None:
        return None
    per_process = math.ceil(here.users / here.processes) if here.processes else 0
    load = per_process * len(scenario.servers)
    sink = 2 * scenario.users if here.sinks else 0
    need = max(load, sink) + RESERVED_FILES
    if need <= hard:
        return None
    return (
        f"users: {_whose(scenario, here)} need about {need} open files in one process "
        f"({len(scenario.servers)} servers each), more than this machine's limit of {hard} "
        "(ulimit -Hn)"
    )


def _whose(scenario: Load, here: Here) -> str:
    if here.sinks or here.users == scenario.users:
        return f"{scenario.users} users"
    return f"this worker's {here.users} of {scenario.users} users"


def largest_message(scenario: Load) -> int:
    """The largest message the campaign can make, bytes (an attachment grows by base64)."""
    return max(
        max(s.size_max, s.attachment_size * 4 // 3 + 4096 if s.attachment_share else 0)
        for s in scenario.campaign.streams
    )


def memory_problem(scenario: Load, here: Here, available: int | None) -> str | None:
    """The messages in flight here and each sending process's templates against the
    memory `available` (bytes; None when unknown)."""
    if available is None:
        return None
    # Each process builds each stream's filler text and attachment once.
    templates = sum(s.size_max + s.attachment_size * 2 for s in scenario.campaign.streams)
    largest = largest_message(scenario)
    in_flight = SENDER_COPIES * here.users * largest
    if here.sinks:
        in_flight += SINK_COPIES * scenario.users * largest
    need = in_flight + here.processes * (templates + PROCESS_BYTES)
    if need <= available:
        return None
    mb = 1024 * 1024
    return (
        f"users: {_whose(scenario, here)} sending messages of up to "
        f"{largest / mb:.1f} MB need about {need / mb:,.0f} MB of memory, "
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
