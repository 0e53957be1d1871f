"""Backup-MX mode: queue durably, forward upstream when it answers, lose nothing."""

from __future__ import annotations

import smtplib

import pytest

from tests.helpers import RawClient, message, none_answers, read_csv, wait_until


def start_pair(start_sinks, tmp_path, primary_port: int = 0):
    primary = start_sinks({"sinks": [{"name": "primary", "port": primary_port}]},
                          journal_dir=tmp_path / "j")  # fmt: skip
    backup_config = {
        "name": "backup",
        "mode": "backup-mx",
        "upstream": {"port": primary.port("primary"), "timeout_s": 1},
        "forward_backoff_s": 0.1,
        "forward_max_backoff_s": 0.3,
    }
    backup = start_sinks({"sinks": [backup_config]}, journal_dir=tmp_path / "j")
    return primary, backup


def test_primary_down_backup_queues_then_forwards_everything(start_sinks, tmp_path):
    primary, backup = start_pair(start_sinks, tmp_path)
    status, fault = primary.control("primary", "POST", "/faults", {"kind": "down"})
    assert status == 201
    with backup.smtp("backup") as client:
        for i in range(20):
            client.sendmail("news@example.com", ["a@gmail.test", "b@yahoo.test"],
                            message(f"m{i}"))  # fmt: skip
    relay = backup.sink("backup").relay

    def deferred() -> bool:
        return any(r["event"] == "deferred" for r in read_csv(relay.journal.path))

    assert wait_until(deferred, 10, step=0.05)
    assert relay.depth() == 20
    assert read_csv(tmp_path / "j" / "receipts-primary.csv") == []
    primary.control("primary", "DELETE", f"/faults/{fault['id']}")
    assert wait_until(lambda: relay.depth() == 0, 10)
    at_primary = read_csv(tmp_path / "j" / "receipts-primary.csv")
    assert sorted(r["msg_id"] for r in at_primary) == sorted(f"m{i}" for i in range(20))
    assert all(r["rcpt_count"] == "2" for r in at_primary)
    queued = read_csv(tmp_path / "j" / "receipts-backup.csv")
    assert {r["outcome"] for r in queued} == {"queued"}
    events = read_csv(relay.journal.path)
    assert sum(e["event"] == "queued" for e in events) == 20
    assert sum(e["event"] == "forwarded" for e in events) == 20
    assert all(e["code"] == "" and e["error"] for e in events if e["event"] == "deferred")
    status = backup.control("backup", "GET", "/status")[1]
    assert status["relay"]["forwarded"] == 20
    assert status["relay"]["depth"] == 0


def test_forwarded_copy_carries_a_received_line(start_sinks, tmp_path):
    primary, backup = start_pair(start_sinks, tmp_path)
    captured = []
    original = primary.sink("primary").received

    def spy(server, envelope, *rest):
        captured.append(envelope.content)
        return original(server, envelope, *rest)

    primary.sink("primary").received = spy
    with backup.smtp("backup") as client:
        client.sendmail("news@example.com", ["a@gmail.test"], message("r1"))
    assert wait_until(lambda: bool(captured), 10)
    assert captured[0].startswith(b"Received: from 127.0.0.1 by backup.maildrill.test")


def test_upstream_5xx_bounces_instead_of_retrying(start_sinks, tmp_path):
    primary, backup = start_pair(start_sinks, tmp_path)
    reject = {"kind": "reject", "stage": "rcpt", "code": 550, "enhanced": "5.1.1"}
    primary.control("primary", "POST", "/faults", reject)
    with backup.smtp("backup") as client:
        client.sendmail("news@example.com", ["a@gmail.test"], message("b1"))
    relay = backup.sink("backup").relay
    assert wait_until(lambda: relay.depth() == 0, 10)
    (bounce,) = [e for e in read_csv(relay.journal.path) if e["event"] == "bounced"]
    assert (bounce["code"], bounce["enhanced"]) == ("550", "5.1.1")


def test_restarted_backup_with_a_full_queue_loses_nothing(start_sinks, tmp_path):
    primary, backup = start_pair(start_sinks, tmp_path)
    primary.control("primary", "POST", "/faults", {"kind": "down"})
    with backup.smtp("backup") as client:
        for i in range(15):
            client.sendmail("news@example.com", ["a@gmail.test"], message(f"q{i}"))
    assert backup.sink("backup").relay.depth() == 15
    port = primary.port("primary")
    backup.close()  # the backup stops with 15 messages queued
    primary.control("primary", "DELETE", "/faults")
    assert primary.port("primary") == port
    restarted = start_sinks(
        {"sinks": [{"name": "backup", "mode": "backup-mx", "upstream": {"port": port},
                    "forward_backoff_s": 0.1}]},
        journal_dir=tmp_path / "j",
    )  # fmt: skip
    relay = restarted.sink("backup").relay
    assert wait_until(lambda: relay.depth() == 0, 10)
    at_primary = read_csv(tmp_path / "j" / "receipts-primary.csv")
    assert sorted(r["msg_id"] for r in at_primary) == sorted(f"q{i}" for i in range(15))


def test_backup_mode_needs_an_upstream():
    from sinks.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="backup-mx needs an upstream"):
        parse_config({"sinks": [{"name": "b", "mode": "backup-mx"}]})
    with pytest.raises(ConfigError, match=r"upstream '10\.0\.0\.1' is not loopback"):
        parse_config(
            {"sinks": [{"name": "b", "mode": "backup-mx", "upstream": {"host": "10.0.0.1",
                                                                        "port": 25}}]}
        )  # fmt: skip


def test_a_message_the_queue_cannot_store_gets_451_and_replaces_nothing(start_sinks, tmp_path):
    """A plain INSERT: a queued message is never overwritten; what is not stored is a 451
    (the client keeps it), with no receipt, whatever the reason."""
    primary, backup = start_pair(start_sinks, tmp_path)
    primary.control("primary", "POST", "/faults", {"kind": "down"})
    relay = backup.sink("backup").relay
    taken = relay.queue_id("backup.1", 1)  # what the next session's first message gets
    relay.db.execute("INSERT INTO queue VALUES (?, 'held', '', '[]', x'00', 0, 0, ?)", (taken, 9e9))
    with backup.smtp("backup") as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("news@example.com", ["a@gmail.test"], message("x1"))
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (451, b"4.3.0")
    assert relay.db.execute("SELECT msg_id FROM queue").fetchall() == [("held",)]
    relay.db.execute("PRAGMA query_only = 1")  # the queue refuses every write now
    with backup.smtp("backup") as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("news@example.com", ["a@gmail.test"], message("x2"))
    assert refused.value.smtp_code == 451
    relay.db.execute("PRAGMA query_only = 0")
    assert read_csv(tmp_path / "j" / "receipts-backup.csv") == []
    refusals = read_csv(tmp_path / "j" / "refusals-backup.csv")
    assert [(r["code"], r["enhanced"], r["msg_id"]) for r in refusals] == [
        ("451", "4.3.0", "x1"), ("451", "4.3.0", "x2"),
    ]  # fmt: skip


def test_durability_is_checked():
    from sinks.config import ConfigError, parse_config

    upstream = {"port": 25}
    with pytest.raises(ConfigError, match="durability"):
        parse_config({"sinks": [{"name": "b", "mode": "backup-mx", "upstream": upstream,
                                 "durability": "none"}]})  # fmt: skip
    with pytest.raises(ConfigError, match="durability is only for mode: backup-mx"):
        parse_config({"sinks": [{"name": "b", "durability": "process"}]})
    (sink,) = parse_config({"sinks": [{"name": "b", "mode": "backup-mx",
                                       "upstream": upstream}]}).sinks  # fmt: skip
    assert sink.durability == "full"


def test_a_receipt_that_cannot_be_journaled_is_a_451_never_a_5xx(start_sinks, tmp_path):
    """A full disk under the journals: the client keeps the message and tries again (451);
    aiosmtpd's own answer would be a 500, a bounce of mail the backup still forwards."""
    primary, backup = start_pair(start_sinks, tmp_path)
    primary.control("primary", "POST", "/faults", {"kind": "down"})
    sink = backup.sink("backup")

    def disk_full(row: object) -> None:
        raise OSError(28, "No space left on device")

    sink.journals.receipts.write = disk_full  # type: ignore[method-assign]
    with backup.smtp("backup") as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("news@example.com", ["a@gmail.test"], message("full"))
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (451, b"4.3.0")
    # Queued before the journal failed: forwarded later, at least once, never bounced.
    assert sink.relay.db.execute("SELECT msg_id FROM queue").fetchall() == [("full",)]


def test_a_hung_backup_queues_nothing_for_a_sender_that_gave_up(start_sinks, tmp_path):
    """A backup MX's commit is its queue: a frozen one neither queues nor acknowledges the
    message whose dot came, and a client that leaves meanwhile leaves nothing to forward."""
    _primary, backup = start_pair(start_sinks, tmp_path)
    relay = backup.sink("backup").relay
    assert relay is not None
    with RawClient(backup.port("backup"), timeout=5) as client:
        assert client.open_data() == 354
        assert backup.control("backup", "POST", "/faults", {"kind": "hang"})[0] == 201
        client.send(message("given-up").encode() + b"\r\n.\r\n")
        assert none_answers(client)
        assert relay.depth() == 0
    assert wait_until(lambda: backup.sink("backup").counters.active_sessions == 0)
    backup.control("backup", "DELETE", "/faults?kind=hang")
    with backup.smtp("backup") as after:
        after.sendmail("news@example.com", ["a@gmail.test"], message("after"))
    assert wait_until(lambda: len(read_csv(tmp_path / "j" / "receipts-primary.csv")) == 1, 10)
    assert [r["msg_id"] for r in read_csv(tmp_path / "j" / "receipts-primary.csv")] == ["after"]
    assert [r["msg_id"] for r in read_csv(tmp_path / "j" / "receipts-backup.csv")] == ["after"]
