"""Workers on other hosts, the pure parts: the addresses `--master-bind` and `--master`
take, the rule for listening outside loopback, the master's roll of its workers (who was
lost, who flushed), and workers.json as the orchestrator reads it."""

from __future__ import annotations

import json

import pytest

from loadtest.distributed import (
    DEFAULT_PORT,
    AddressError,
    Endpoint,
    RemoteWorkers,
    WorkersFile,
    bind_problem,
    is_host_name,
    master_args,
    not_connected,
    parse_endpoint,
    parse_wait,
    worker_command,
)
from loadtest.worker_cmd import CONNECT_TRIES_MAX, connect_bounds
from loadtest.worker_roll import MISSING, PRESENT, WorkerRoll


@pytest.mark.parametrize(
    ("text", "bind", "expected"),
    [
        ("127.0.0.1:6000", True, Endpoint("127.0.0.1", 6000)),
        ("198.18.1.1", True, Endpoint("198.18.1.1", DEFAULT_PORT)),
        ("0.0.0.0:5557", True, Endpoint("0.0.0.0", 5557)),
        ("localhost:7000", True, Endpoint("127.0.0.1", 7000)),
        ("master.example.test:5557", False, Endpoint("master.example.test", 5557)),
        ("Drill-Master", False, Endpoint("drill-master", DEFAULT_PORT)),
    ],
)
def test_addresses_that_are_taken(text, bind, expected):
    assert parse_endpoint(text, "--flag", bind=bind) == expected


@pytest.mark.parametrize(
    ("text", "bind", "words"),
    [
        ("", True, "HOST[:PORT]"),
        (":5557", False, "HOST[:PORT]"),
        ("127.0.0.1:http", True, "not a port number"),
        ("127.0.0.1:0", True, "1-65535"),
        ("127.0.0.1:65536", False, "1-65535"),
        ("master.example.test", True, "IPv4 address"),
        ("[::1]:5557", True, "IPv4"),
        ("::1", True, "IPv4"),
        ("bad_host!:5557", False, "not a host name"),
        ("a..b:5557", False, "not a host name"),
    ],
)
def test_addresses_refused_in_one_line_naming_the_flag(text, bind, words):
    with pytest.raises(AddressError) as caught:
        parse_endpoint(text, "--master-bind", bind=bind)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--master-bind ")
    assert words in message


def test_listening_outside_loopback_needs_allow_remote():
    assert bind_problem(Endpoint("127.0.0.1", 5557), allow_remote=False) is None
    assert bind_problem(Endpoint("198.18.1.1", 5557), allow_remote=True) is None
    for host in ("198.18.1.1", "0.0.0.0"):
        problem = bind_problem(Endpoint(host, 5557), allow_remote=False)
        assert problem is not None
        assert "allow_remote: true" in problem
        assert "--yes" in problem


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "3601", "soon"])
def test_waits_out_of_bounds_are_refused(text):
    with pytest.raises(AddressError, match="--wait"):
        parse_wait(text, "--wait")


def test_waits_within_bounds():
    assert parse_wait("2.5", "--wait") == 2.5
    assert parse_wait("3600", "--wait") == 3600


def test_the_masters_arguments_bound_its_wait_for_workers():
    remote = RemoteWorkers(Endpoint("198.18.1.1", 6000), expect=2, wait_s=30)
    args = master_args(remote)
    assert args[args.index("--master-bind-host") + 1] == "198.18.1.1"
    assert args[args.index("--master-bind-port") + 1] == "6000"
    assert args[args.index("--expect-workers") + 1] == "2"
    assert args[args.index("--expect-workers-max-wait") + 1] == "30"


def test_workers_that_did_not_come_are_counted_from_locusts_log():
    remote = RemoteWorkers(Endpoint("0.0.0.0", 6000), expect=3, wait_s=20)
    log = (
        "Waiting for workers to be ready, 0 of 3 connected\n"
        "Waiting for workers to be ready, 2 of 3 connected\n"
        "Gave up waiting for workers to connect\n"
    )
    line = not_connected(remote, log)
    assert line.startswith("only 2 of 3 Locust workers connected to 0.0.0.0:6000 within 20 s")
    assert "maildrill worker --master THIS-HOST:6000" in line
    assert not_connected(remote, "").startswith("fewer than 3 Locust workers connected")
    one = RemoteWorkers(Endpoint("127.0.0.1", 6000), expect=1, wait_s=2)
    assert not_connected(one, "Waiting for workers to be ready, 0 of 1 connected\n") == (
        "the Locust worker did not connect to 127.0.0.1:6000 within 2 s; "
        "start each with `maildrill worker --master 127.0.0.1:6000`"
    )


def test_a_master_on_every_interface_is_named_this_host_in_the_advice():
    assert worker_command(Endpoint("0.0.0.0", 6000)) == "maildrill worker --master THIS-HOST:6000"
    assert worker_command(Endpoint("198.18.1.1", 5557)) == (
        "maildrill worker --master 198.18.1.1:5557"
    )


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("a" * 63 + ".example", True),
        ("a" * 64 + ".example", False),
        ("1.2.3.4.5", False),
        ("host-1.example", True),
        ("10.example", True),
        ("h\u00e9.example", False),
    ],
)
def test_host_names(host, ok):
    assert is_host_name(host) is ok


# -- the master's roll ----------------------------------------------------------------


def test_a_worker_silent_or_gone_before_its_share_is_done_is_lost_once():
    roll = WorkerRoll(["a", "b", "c"], t0=100.0)
    assert roll.check(101.0, {"a": PRESENT, "b": PRESENT, "c": PRESENT}, stopping=False) == []
    assert roll.check(102.5, {"a": PRESENT, "b": MISSING}, stopping=False) == ["b", "c"]
    assert roll.workers["b"].why == "no heartbeat"
    assert roll.workers["c"].why == "left"
    assert roll.workers["b"].lost_at_s == 2.5
    assert roll.check(103.0, {"a": PRESENT}, stopping=False) == []  # named once
    assert not roll.all_finished()
    roll.finished("a")
    assert roll.all_finished()  # nothing more will be sent: a done, b and c lost


def test_a_worker_whose_share_is_done_may_leave():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.finished("a")
    assert roll.check(5.0, {}, stopping=False) == []


def test_once_stopping_a_worker_that_flushed_leaves_as_told_one_that_did_not_is_lost():
    roll = WorkerRoll(["a", "b"], t0=0.0)
    roll.received("a", 10)
    roll.flushed("a", 10)
    assert roll.awaiting_flush() == ["b"]
    assert roll.check(9.0, {"b": MISSING}, stopping=True) == ["b"]
    assert roll.awaiting_flush() == []
    record = roll.record()["workers"]
    assert record["a"] == {"rows": 10, "shipped": 10, "rows_missing": 0, "done": False,
                           "lost_at_s": None, "why": "", "missing_at_s": None,
                           "recovered_at_s": None}  # fmt: skip
    assert record["b"]["lost_at_s"] == 9.0


def test_a_worker_still_connected_whose_final_flush_never_comes_is_lost():
    roll = WorkerRoll(["a", "b"], t0=0.0)
    roll.received("a", 4)
    roll.flushed("a", 4)
    roll.received("b", 6)  # b is there to the end, but says nothing more
    assert roll.check(20.0, {"a": PRESENT, "b": PRESENT}, stopping=True) == []
    assert roll.settle(30.0, 10.0) == ["b"]
    assert roll.record()["workers"]["b"]["lost_at_s"] == 30.0
    assert roll.record()["workers"]["b"]["why"] == "no final flush within 10 s"
    assert roll.settle(31.0, 10.0) == []  # named once; a flushed


def test_a_worker_that_missed_heartbeats_and_came_back_whole_is_recovered():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.received("a", 5)
    assert roll.check(3.0, {"a": MISSING}, stopping=False) == ["a"]
    assert roll.recover(4.0, {"a": MISSING}) == []  # still silent
    assert roll.recover(4.5, {"a": PRESENT}) == ["a"]
    assert roll.check(4.5, {"a": PRESENT}, stopping=False) == []
    assert roll.check(6.0, {"a": MISSING}, stopping=False) == ["a"]  # silent again
    assert roll.recover(6.5, {"a": PRESENT}) == ["a"]
    roll.received("a", 7)
    roll.flushed("a", 12)
    assert roll.settle(20.0, 10.0) == []
    state = roll.record()["workers"]["a"]
    assert (state["lost_at_s"], state["why"]) == (None, "")
    assert (state["missing_at_s"], state["recovered_at_s"]) == (3.0, 6.5)  # the first miss


def test_a_worker_that_came_back_with_rows_missing_stays_lost_from_its_first_miss():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.received("a", 5)
    roll.check(3.0, {"a": MISSING}, stopping=False)
    roll.recover(4.0, {"a": PRESENT})
    roll.flushed("a", 9)
    assert roll.settle(20.0, 10.0) == ["a"]
    state = roll.record()["workers"]["a"]
    assert state["lost_at_s"] == 3.0
    assert state["why"] == "no heartbeat at 3 s; 4 rows never arrived"


def test_a_worker_that_left_does_not_come_back():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.check(3.0, {}, stopping=False)
    assert roll.recover(4.0, {"a": PRESENT}) == []
    assert roll.workers["a"].why == "left"


def test_rows_shipped_that_never_arrived_are_counted():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.received("a", 7)
    roll.received("a", 2)
    roll.flushed("a", 12)
    assert roll.record()["workers"]["a"]["rows_missing"] == 3


def test_a_refusal_is_the_reason_the_worker_was_lost():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.refused("a", "servers: 'primary' is at 192.0.2.1, outside loopback")
    assert roll.check(1.0, {}, stopping=False) == ["a"]
    assert roll.workers["a"].why.startswith("refused the plan: servers:")


def test_unknown_workers_change_nothing():
    roll = WorkerRoll(["a"], t0=0.0)
    roll.received("z", 5)
    roll.finished("z")
    roll.flushed("z", 5)
    assert list(roll.record()["workers"]) == ["a"]


# -- workers.json, read by the orchestrator -------------------------------------------


def test_the_workers_file_names_each_lost_worker_once(tmp_path):
    path = tmp_path / "workers.json"
    seen = WorkersFile(path)
    assert seen.newly_lost() == []  # not written yet
    roll = WorkerRoll(["a", "b"], t0=0.0)
    path.write_text(json.dumps(roll.record()))
    assert seen.newly_lost() == []
    roll.check(4.0, {"a": PRESENT}, stopping=False)
    roll.received("a", 3)
    roll.flushed("a", 5)
    path.write_text(json.dumps(roll.record()) + " ")  # another size: a new version
    assert seen.newly_lost() == [{"worker": "b", "at_s": 4.0, "why": "left"}]
    assert seen.newly_lost() == []
    assert seen.rows_missing() == {"a": 2}


def test_the_workers_file_at_the_end_names_the_lost_for_good_and_the_recovered(tmp_path):
    path = tmp_path / "workers.json"
    roll = WorkerRoll(["a", "b"], t0=0.0)
    roll.check(3.0, {"a": MISSING, "b": PRESENT}, stopping=False)
    path.write_text(json.dumps(roll.record()))
    seen = WorkersFile(path)
    assert seen.newly_lost() == [{"worker": "a", "at_s": 3.0, "why": "no heartbeat"}]
    roll.recover(4.0, {"a": PRESENT, "b": PRESENT})
    roll.flushed("a", 0)
    assert roll.settle(20.0, 10.0) == ["b"]
    path.write_text(json.dumps(roll.record()) + " ")
    assert seen.lost_at_end() == [{"worker": "b", "at_s": 20.0,
                                   "why": "no final flush within 10 s"}]  # fmt: skip
    assert seen.recovered() == [{"worker": "a", "missing_at_s": 3.0, "recovered_at_s": 4.0}]


def test_a_damaged_workers_file_reads_as_nothing(tmp_path):
    path = tmp_path / "workers.json"
    path.write_text("{not json")
    assert WorkersFile(path).newly_lost() == []
    path.write_text('{"workers": [1, 2]}')
    assert WorkersFile(path).newly_lost() == []
    assert WorkersFile(path).rows_missing() == {}


@pytest.mark.parametrize("wait", [0.5, 1, 2.5, 60, 600, 3600])
def test_the_handshake_holds_to_the_wait_in_a_few_tries_however_long(wait):
    """Locust retries its handshake by recursion: 3600 one-second tries would pass
    Python's recursion limit, so the timeout grows instead of the tries."""
    timeout, tries = connect_bounds(wait)
    assert timeout >= 1
    assert tries <= CONNECT_TRIES_MAX
    assert wait <= timeout * tries < wait + timeout  # the whole wait, not much more


def test_the_handshake_timeout_is_a_second_for_short_waits():
    assert connect_bounds(30) == (1.0, 30)
    assert connect_bounds(3600) == (72.0, 50)
