"""The machine checks count what of a run this machine holds (loadtest.limits.Here): a run
spread over workers on other hosts fits where the same run on one machine does not."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest import limits
from loadtest.limits import Here, master_of_remote_workers, whole_run, worker_share

MB = 1024 * 1024


@dataclass(frozen=True)
class Stream:
    size_max: int = 10 * MB
    attachment_size: int = 0
    attachment_share: float = 0.0


@dataclass(frozen=True)
class Campaign:
    streams: tuple[Stream, ...] = (Stream(),)


@dataclass(frozen=True)
class Load:
    users: int = 1000
    workers: int = 1
    servers: tuple[str, ...] = ("primary", "secondary")
    campaign: Campaign = field(default_factory=Campaign)


LOAD = Load()
LARGEST = 10 * MB
TEMPLATES = 10 * MB


def need(here: Here) -> int:
    """The memory need written out from the copies each side keeps, for the test's load."""
    sender = limits.SENDER_COPIES * here.users * LARGEST
    sink = limits.SINK_COPIES * LOAD.users * LARGEST if here.sinks else 0
    return sender + sink + here.processes * (TEMPLATES + limits.PROCESS_BYTES)


def test_the_parts_of_a_run() -> None:
    assert whole_run(Load(workers=3)) == Here(processes=3, users=1000, sinks=True)
    assert master_of_remote_workers() == Here(processes=0, users=0, sinks=True)
    assert worker_share(LOAD, 3) == Here(processes=1, users=334, sinks=False)


def test_memory_each_part_needs_its_own_share() -> None:
    parts = [whole_run(LOAD), master_of_remote_workers(), worker_share(LOAD, 4)]
    needs = [need(part) for part in parts]
    assert needs[0] > needs[1] > needs[2]
    for part, bytes_ in zip(parts, needs, strict=True):
        assert limits.memory_problem(LOAD, part, bytes_) is None
        assert limits.memory_problem(LOAD, part, bytes_ - 1) is not None
    # The master and each of four workers fit in what the whole run on one machine lacks.
    available = needs[0] - 1
    assert limits.memory_problem(LOAD, whole_run(LOAD), available) is not None
    assert limits.memory_problem(LOAD, master_of_remote_workers(), available) is None


def test_a_worker_is_told_its_own_share_in_one_line() -> None:
    problem = limits.memory_problem(LOAD, worker_share(LOAD, 4), 100 * MB)
    assert problem is not None
    assert "\n" not in problem
    assert problem.startswith("users: this worker's 250 of 1000 users sending messages")
    whole = limits.memory_problem(LOAD, whole_run(LOAD), 100 * MB)
    assert whole is not None
    assert whole.startswith("users: 1000 users sending messages")


def test_open_files_count_the_connections_held_here() -> None:
    # One process of the whole run: 1000 users x 2 servers; its sinks 2 per user.
    assert limits.open_files_problem(LOAD, whole_run(LOAD), 2000 + 256) is None
    assert limits.open_files_problem(LOAD, whole_run(LOAD), 2000 + 255) is not None
    # A worker of four: 250 users x 2 servers, no sink.
    assert limits.open_files_problem(LOAD, worker_share(LOAD, 4), 500 + 256) is None
    problem = limits.open_files_problem(LOAD, worker_share(LOAD, 4), 500 + 255)
    assert problem is not None
    assert "this worker's 250 of 1000 users" in problem
    # The master holds the sinks' connections and sends nothing.
    assert limits.open_files_problem(LOAD, master_of_remote_workers(), 2000 + 256) is None
    assert limits.open_files_problem(LOAD, master_of_remote_workers(), 2000 + 255) is not None
    # Unlimited: nothing to check.
    assert limits.open_files_problem(LOAD, whole_run(LOAD), None) is None
