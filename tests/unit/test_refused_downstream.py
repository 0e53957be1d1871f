"""Mail refused for good further on (loadtest/analysis/downstream.py) counted apart from
lost mail: hand-built journals with one message of each fate, each worked out by hand, the
identities of docs/metrics.md checked on them."""

from __future__ import annotations

from pathlib import Path

from loadtest.analysis import downstream, journals, recipients, reconcile
from maildrill.records import (
    AttemptRecord,
    MtaQueueRecord,
    ReceiptRecord,
    RefusalRecord,
    RelayRecord,
)
from tests.runs import T0, write_csv
from tests.unit.test_recipients import RUN, got, held, sent


def refusal(k: int | None, code: int, stage: str = "dot") -> RefusalRecord:
    """gmail-mx's refusal; `k` None: at RCPT, before the headers, so no msg_id."""
    return RefusalRecord(
        time=T0 + 30, sink="gmail-mx", worker=0, session="gmail-mx.1", peer="127.0.0.1",
        stage=stage, code=str(code), enhanced="5.7.26" if code >= 500 else "4.7.0",
        mail_from="news@example.com", rcpt_count=1,
        msg_id="" if k is None else f"{RUN}-{k}",
    )  # fmt: skip


def bounced(k: int) -> RelayRecord:
    return RelayRecord(
        time=T0 + 30, sink="bk", worker=0, msg_id=f"{RUN}-{k}", queue_id="q", event="bounced",
        upstream="127.0.0.1:2526", attempt=1, code=550, enhanced="5.1.1", error="",
        queued_at=T0 + k,
    )  # fmt: skip


def test_one_message_of_each_fate(tmp_path: Path) -> None:
    """0 delivered; 1 stranded in the MTA's queue; 2 refused 550 at the dot by gmail-mx;
    3 refused 451 (not for good, nothing queued at the end: lost); 4 refused at RCPT (no
    msg_id: stays lost, the known limit); 5 queued by backup MX bk, whose upstream bounced
    it; 6 accepted by a server maildrill cannot see past (unverified); 7 the same server,
    refused 550 further on (refused downstream, not unverified); 8 to two recipients, one
    delivered, one refused 550 (the message was received; one recipient refused)."""
    attempts = [sent(k, 1) for k in range(6)]
    attempts += [sent(6, 1, server="ext"), sent(7, 1, server="ext"), sent(8, 2)]
    write_csv(tmp_path / "attempts.csv", AttemptRecord, attempts)
    write_csv(
        tmp_path / "receipts-gmail-mx.csv",
        ReceiptRecord,
        [got(0, "gmail-mx", "a@gmail.test"), got(8, "gmail-mx", "b@yahoo.test")],
    )
    write_csv(tmp_path / "receipts-bk.csv", ReceiptRecord,
              [got(5, "bk", "c@gmail.test", outcome="queued")])  # fmt: skip
    write_csv(tmp_path / "refusals-gmail-mx.csv", RefusalRecord,
              [refusal(2, 550), refusal(3, 451), refusal(None, 550, "rcpt"), refusal(7, 554),
               refusal(8, 550)])  # fmt: skip
    write_csv(tmp_path / "relay-bk.csv", RelayRecord, [bounced(5)])
    write_csv(tmp_path / "mta-queue-mta.csv", MtaQueueRecord, [held(1, "d@gmail.test")])

    attempts_frame = journals.load_kind(tmp_path, "attempts")
    receipts = journals.load_kind(tmp_path, "receipts")
    queue = journals.load_kind(tmp_path, "mta_queue")
    refused = downstream.refused_for_good(
        journals.load_kind(tmp_path, "relay"), journals.load_kind(tmp_path, "refusals")
    )
    assert refused == {f"{RUN}-{k}" for k in (2, 5, 7, 8)}  # by the code: 451 and no id out
    per = reconcile.messages(attempts_frame, receipts)
    args = dict(unobserved=frozenset({"ext"}), released=frozenset({f"{RUN}-5"}), refused=refused)
    m = reconcile.count(per, 9, RUN, frozenset(queue["msg_id"]), **args)
    assert (m.accepted, m.received_unique, m.stranded) == (9, 2, 1)  # 0 and 8; 1
    assert (m.refused_downstream, m.lost, m.unverified) == (3, 2, 1)  # 2 5 7; 3 4; 6
    assert m.stranded + m.refused_downstream + m.lost + m.unverified == m.accepted - 2
    r = recipients.count(per, attempts_frame, receipts, queue, RUN, **args)
    assert (r.accepted, r.delivered, r.stranded) == (10, 2, 1)  # 0 and 8's first; 1
    assert (r.refused_downstream, r.lost, r.unverified) == (4, 2, 1)  # 2 5 7 8's second
    assert r.delivered + r.stranded + r.unverified + r.refused_downstream + r.lost == r.accepted
