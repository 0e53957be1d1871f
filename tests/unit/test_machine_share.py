"""The machine checks count what of a run this machine holds (loadtest.limits.Here): a run
spread over workers on other hosts fits where the same run on one machine does not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from loadtest import limits
from loadtest.limits import Here, master_of_remote_workers, whole_run, worker_share
from loadtest.orchestrate import prepare
from loadtest.scenario import ScenarioError

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


# The need of each part for LOAD, in MB, written out: 1000 users' 10 MB messages, two
# copies in the sender and two in the sink, and 100 MB + 10 MB of templates per process.
WHOLE_MB = 2 * 1000 * 10 + 2 * 1000 * 10 + 1 * (100 + 10)  # 40,110
MASTER_MB = 2 * 1000 * 10  # 20,000: the sinks only, no sending process
WORKER_OF_4_MB = 2 * 250 * 10 + 1 * (100 + 10)  # 5,110: its 250 users, no sink


def test_the_parts_of_a_run() -> None:
    assert whole_run(Load(workers=3)) == Here(processes=3, users=1000, sinks=True)
    assert master_of_remote_workers() == Here(processes=0, users=0, sinks=True)
    assert worker_share(LOAD, 3) == Here(processes=1, users=334, sinks=False)


def test_memory_each_part_needs_its_own_share() -> None:
    parts = [whole_run(LOAD), master_of_remote_workers(), worker_share(LOAD, 4)]
    for part, mb in zip(parts, [WHOLE_MB, MASTER_MB, WORKER_OF_4_MB], strict=True):
        assert limits.memory_problem(LOAD, part, mb * MB) is None
        problem = limits.memory_problem(LOAD, part, mb * MB - 1)
        assert problem is not None
        assert f"need about {mb:,} MB of memory" in problem


def test_a_run_spread_over_hosts_is_checked_for_the_masters_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maildrill run --master-bind` checks its machine for the sinks alone: a run that
    does not fit on one machine is refused there, and accepted as the master of workers."""
    path = tmp_path / "big.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "servers": [{"name": "primary", "local": True}],
                "users": 1000,
                "campaign": {
                    "schedule": [{"duration_s": 5, "rate": 1}],
                    "streams": [{"size_min": 1000, "size_median": 2000, "size_max": 10 * MB}],
                },
            }
        )
    )
    monkeypatch.setattr(limits, "available_memory", lambda: 30_000 * MB)
    with pytest.raises(ScenarioError, match=r"users: 1000 users sending messages .* 40,110 MB"):
        prepare(path, [])
    _, scenario = prepare(path, [], remote_workers=True)
    assert scenario.users == 1000


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
