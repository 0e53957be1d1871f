"""Accounting per recipient (loadtest/analysis/recipients.py) on hand-built journals: the
cases a per-message count cannot see (a message delivered for one domain and stranded for
another; one part delivered twice and another missing), refused recipients, a backup MX's
queue, servers maildrill cannot see past, and journals from before receipts named their
recipients. Each answer is worked out by hand in the test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loadtest import postfix
from loadtest.analysis import journals, recipients, reconcile, view
from maildrill.records import AttemptRecord, MtaQueueRecord, ReceiptRecord
from tests import runs
from tests.runs import T0, write_csv

RUN = "rcpt"

SCENARIO = """\
name: per-recipient
description: an MTA under test splitting messages by domain
servers:
  - {name: mta, priority: 10, local: true, host: 127.0.0.1, port: 2525}
  - {name: gmail-mx, priority: 20, local: true, host: 127.0.0.1, port: 2526}
  - {name: yahoo-mx, priority: 30, local: true, host: 127.0.0.1, port: 2527}
routing: {policy: failover, servers: [mta]}
campaign:
  seed: 1
  schedule: [{duration_s: 10, rate: 1}]
users: 2
slo: [lost == 0, duplicates == 0, recipients_lost == 0, recipients_duplicated == 0]
"""


def sent(k: int, rcpts: int, refused: int = 0, server: str = "mta") -> AttemptRecord:
    return AttemptRecord(
        run_id=RUN, worker="local", msg_id=f"{RUN}-{k}", stream="promotional", attempt=1,
        server=server, intended=T0 + k, due=T0 + k, start=T0 + k, connected=T0 + k,
        end=T0 + k + 0.01, phase="dot", code=250, enhanced="2.0.0", outcome="accepted",
        bytes=1000, recipients=rcpts, recipients_refused=refused, new_connection=True,
        retry=False, failover=False, final=True, maybe_duplicate=False, error="",
    )  # fmt: skip


def got(k: int, sink: str, *rcpts: str, at: float = 1.0, outcome: str = "accepted"):
    return ReceiptRecord(
        time=T0 + k + at, sink=sink, worker=0, session=f"{sink}.1", peer="127.0.0.1",
        msg_id=f"{RUN}-{k}", message_id="", mail_from="news@example.com",
        rcpt_count=len(rcpts), size=1000, outcome=outcome, queue_id="q", helo="mx.mta.test",
        rcpts=" ".join(rcpts),
    )  # fmt: skip


def held(k: int, *pending: str) -> MtaQueueRecord:
    return MtaQueueRecord(
        time=T0 + 20, mta="mta", msg_id=f"{RUN}-{k}", queue="deferred", rcpts=" ".join(pending)
    )


def write_run(
    tmp_path: Path,
    attempts: list[AttemptRecord],
    receipts: dict[str, list[ReceiptRecord]],
    queued: list[MtaQueueRecord] = (),  # type: ignore[assignment]
) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "scenario.yaml").write_text(SCENARIO)
    (run_dir / "run.json").write_text(
        f'{{"run_id": "{RUN}", "t0": {T0}, "planned": {len(attempts)}, "workers": []}}'
    )
    write_csv(run_dir / "attempts.csv", AttemptRecord, attempts)
    for sink, rows in receipts.items():
        write_csv(run_dir / f"receipts-{sink}.csv", ReceiptRecord, rows)
    if queued:
        write_csv(run_dir / "mta-queue-mta.csv", MtaQueueRecord, queued)
    return run_dir


def count(run_dir: Path, **kwargs: frozenset[str]):
    """Messages and recipients of a run directory's journals."""
    attempts = journals.load_kind(run_dir, "attempts")
    receipts = journals.load_kind(run_dir, "receipts")
    queue = journals.load_kind(run_dir, "mta_queue")
    per = reconcile.messages(attempts, receipts)
    stuck = frozenset(queue["msg_id"])
    messages = reconcile.count(per, len(per), RUN, stuck, **kwargs)
    return messages, recipients.count(per, attempts, receipts, queue, RUN, **kwargs)


def test_delivered_for_one_domain_and_stranded_for_another(tmp_path):
    """Message 0 to a Gmail and a Yahoo address: the MTA delivered the Gmail part; the Yahoo
    part is still in its queue at the end. Per message it was received; per recipient one
    is delivered and one stranded."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 2)],
        {"gmail-mx": [got(0, "gmail-mx", "a@gmail.test")]},
        [held(0, "b@yahoo.test")],
    )
    messages, per_rcpt = count(run_dir)
    assert (messages.received_unique, messages.stranded, messages.lost) == (1, 0, 0)
    assert per_rcpt.accepted == 2
    assert (per_rcpt.delivered, per_rcpt.stranded, per_rcpt.lost) == (1, 1, 0)


def test_one_part_twice_and_another_missing(tmp_path):
    """Message 0 to a Gmail and a Yahoo address: the Gmail part arrived twice, the Yahoo part
    never, and nothing is queued. Two receipts of one recipient each for two recipients:
    per message neither duplicated nor lost; per recipient one duplicated and one lost."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 2)],
        {"gmail-mx": [got(0, "gmail-mx", "a@gmail.test"),
                      got(0, "gmail-mx", "a@gmail.test", at=2.0)]},
    )  # fmt: skip
    messages, per_rcpt = count(run_dir)
    assert (messages.duplicates, messages.lost) == (0, 0)
    assert (per_rcpt.accepted, per_rcpt.delivered) == (2, 1)
    assert (per_rcpt.duplicated, per_rcpt.lost, per_rcpt.stranded) == (1, 1, 0)


def test_a_recipient_refused_at_rcpt_is_neither_accepted_nor_lost(tmp_path):
    """Message 0 named three recipients, one refused (a 5xx: a bounce, not a loss); the two
    accepted arrived in one copy."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 3, refused=1)],
        {"gmail-mx": [got(0, "gmail-mx", "a@x.test", "b@x.test")]},
    )
    _, per_rcpt = count(run_dir)
    assert (per_rcpt.addressed, per_rcpt.accepted, per_rcpt.delivered) == (3, 2, 2)
    assert (per_rcpt.lost, per_rcpt.duplicated) == (0, 0)


def test_a_message_split_by_domain_and_delivered_whole_is_neither_lost_nor_duplicated(tmp_path):
    """Message 0's three recipients in two copies (one per domain); message 1 a single copy
    to its one recipient; message 2 accepted and found nowhere (its two recipients lost)."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 3), sent(1, 1), sent(2, 2)],
        {"gmail-mx": [got(0, "gmail-mx", "a@gmail.test", "c@gmail.test"),
                      got(1, "gmail-mx", "d@gmail.test")],
         "yahoo-mx": [got(0, "yahoo-mx", "b@yahoo.test")]},
    )  # fmt: skip
    messages, per_rcpt = count(run_dir)
    assert (messages.lost, messages.duplicates) == (1, 0)
    assert (per_rcpt.addressed, per_rcpt.accepted, per_rcpt.delivered) == (6, 6, 4)
    assert (per_rcpt.lost, per_rcpt.duplicated, per_rcpt.stranded) == (2, 0, 0)


def test_a_backup_mx_holding_a_message_strands_each_of_its_recipients(tmp_path):
    """Message 0 queued by a backup MX for its two recipients and never forwarded (released
    is empty): both stranded. Message 1 queued, forwarded and delivered: not stranded, and
    the queueing is a hop, not a second copy."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 2, server="backup"), sent(1, 2, server="backup")],
        {"backup": [got(0, "backup", "a@x.test", "b@x.test", outcome="queued"),
                    got(1, "backup", "c@x.test", "d@x.test", outcome="queued")],
         "primary": [got(1, "primary", "c@x.test", "d@x.test", at=3.0)]},
    )  # fmt: skip
    messages, per_rcpt = count(run_dir, released=frozenset({f"{RUN}-1"}))
    assert (messages.stranded, messages.duplicates) == (1, 0)
    assert (per_rcpt.accepted, per_rcpt.delivered, per_rcpt.stranded) == (4, 2, 2)
    assert (per_rcpt.lost, per_rcpt.duplicated) == (0, 0)


def test_a_server_maildrill_cannot_see_past_leaves_its_recipients_unverified(tmp_path):
    run_dir = write_run(tmp_path, [sent(0, 2, server="theirs"), sent(1, 2)], {})
    _, per_rcpt = count(run_dir, unobserved=frozenset({"theirs"}))
    assert (per_rcpt.accepted, per_rcpt.unverified, per_rcpt.lost) == (4, 2, 2)


def test_receipts_without_names_are_counted_from_their_numbers(tmp_path):
    """Journals from before `rcpts`: message 0 (two recipients) in one copy of 2 and one
    copy of 1 (one recipient twice, which one unknown); message 1 (two recipients) in one
    copy of 1 and its queue file still holding the other (no names either)."""
    run_dir = write_run(
        tmp_path,
        [sent(0, 2), sent(1, 2)],
        {"gmail-mx": [got(0, "gmail-mx", "a@x.test", "b@x.test"), got(0, "gmail-mx", "a@x.test"),
                      got(1, "gmail-mx", "c@x.test")]},
        [held(1, "d@x.test")],
    )  # fmt: skip
    for name in ("receipts-gmail-mx.csv", "mta-queue-mta.csv"):  # drop the new last column
        path = run_dir / name
        lines = path.read_text().splitlines()
        path.write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines))
    _, per_rcpt = count(run_dir)
    assert (per_rcpt.accepted, per_rcpt.delivered, per_rcpt.duplicated) == (4, 3, 1)
    assert (per_rcpt.stranded, per_rcpt.lost) == (1, 0)


def test_the_summary_has_the_counts_their_slos_and_a_table_where_they_differ(tmp_path):
    run_dir = write_run(
        tmp_path,
        [sent(0, 2), sent(1, 1)],
        {"gmail-mx": [got(0, "gmail-mx", "a@gmail.test"), got(0, "gmail-mx", "a@gmail.test"),
                      got(1, "gmail-mx", "c@gmail.test")]},
    )  # fmt: skip
    result = runs.summarised(run_dir)
    assert result.recipients.model_dump() == {
        "addressed": 3, "accepted": 3, "delivered": 2, "lost": 1, "duplicated": 1,
        "stranded": 0, "unverified": 0, "refused_downstream": 0,
    }  # fmt: skip
    checks = {c.name: (c.value, c.passed) for c in result.slo.checks}
    assert checks == {
        "lost": (0, True), "duplicates": (0, True),
        "recipients_lost": (1, False), "recipients_duplicated": (1, False),
    }  # fmt: skip
    table = view.recipients(result)
    assert table is not None
    assert dict(zip(table.headers, table.rows[0], strict=True))["lost"] == "1"


def test_single_recipient_messages_show_no_recipients_table(tmp_path):
    run_dir = write_run(
        tmp_path, [sent(0, 1), sent(1, 1)], {"gmail-mx": [got(0, "gmail-mx", "a@gmail.test")]}
    )
    result = runs.summarised(run_dir)
    assert (result.recipients.accepted, result.recipients.lost) == (2, 1)
    assert view.recipients(result) is None
    assert "recipients" not in {t.anchor for t in view.build(result).sections}


def test_empty_journals_count_nothing():
    empty = pd.DataFrame()
    per = reconcile.messages(journals.load_kind(Path("/nonexistent"), "attempts"), empty)
    counts = recipients.count(per, empty, empty, empty)
    assert counts.accepted == counts.lost == counts.delivered == 0


def record(kind: str, payload: bytes) -> bytes:
    """A Postfix queue file record: type byte, length 7 bits a byte (low first), payload."""
    length, out = len(payload), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return kind.encode() + bytes(out) + payload


def test_a_postfix_queue_file_names_the_recipients_still_to_deliver():
    """One recipient done (its 'R' rewritten to 'D' in place), two to do; the id is the
    message's own header line, not one quoted later in the body; a long line's length
    takes two bytes."""
    data = b"".join([
        record("C", b"             1234            567 2 0 1000"),
        record("S", b"news@example.com"),
        record("D", b"a@gmail.test"),
        record("R", b"b@yahoo.test"),
        record("R", b"c@yahoo.test"),
        record("M", b""),
        record("N", b"X-Maildrill-Id: rcpt-7"),
        record("N", b"x" * 300),
        record("N", b"X-Maildrill-Id: rcpt-8"),
        record("E", b""),
    ])  # fmt: skip
    assert postfix.queue_file(data) == ("rcpt-7", ("b@yahoo.test", "c@yahoo.test"))
    assert postfix.queue_file(b"") == ("", ())
