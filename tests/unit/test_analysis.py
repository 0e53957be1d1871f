"""The analysis on hand-built journals whose answers are known."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.analysis import partitions
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.scenario import Scenario, parse_scenario
from maildrill.records import (
    AttemptRecord,
    FaultRecord,
    ProxyRecord,
    ReceiptRecord,
    RelayRecord,
)
from tests import runs

# Rows here are built by column name with raw cells (a wrong one on purpose at times).
ATTEMPT_FIELDS = AttemptRecord.header()
RECEIPT_FIELDS = ReceiptRecord.header()
FAULT_FIELDS = FaultRecord.header()
PROXY_FIELDS = ProxyRecord.header()
RELAY_FIELDS = RelayRecord.header()
T0 = 1_800_000_000.0
RUN = "hand"


def summarise(run_dir: Path, scenario: Scenario | None = None) -> dict[str, Any]:
    """summary.json's content for the run, analysed with `scenario` (not its own); the
    same read a partition of its messages at a time (three partitions), checked here."""
    run = dataclasses.replace(RunDir.load(run_dir), scenario=scenario)
    made = summary_mod.summarise(run).model_dump(mode="json")
    split = partitions.split(run_dir, 3)
    if split is not None:
        with split:
            shared = dataclasses.replace(RunDir.load(run_dir, split=split), scenario=scenario)
            assert summary_mod.summarise(shared).model_dump(mode="json") == made
    return made


def attempt(
    i: int,
    server: str,
    start: float,
    end: float,
    outcome: str = "accepted",
    attempt_no: int = 1,
    final: int = 1,
    phase: str = "dot",
    code: int | str = 250,
    enhanced: str = "2.0.0",
    intended: float | None = None,
    maybe_dup: int = 0,
):
    values = {
        "run_id": RUN, "worker": "local", "msg_id": f"{RUN}-{i}", "stream": "promotional",
        "attempt": attempt_no, "server": server,
        "intended": T0 + (start if intended is None else intended), "due": T0 + start,
        "start": T0 + start, "connected": T0 + start, "end": T0 + end, "phase": phase,
        "code": code, "enhanced": enhanced, "outcome": outcome, "bytes": 1000, "recipients": 1,
        "recipients_refused": 0, "new_connection": 0, "retry": int(attempt_no > 1),
        "failover": int(server != "primary"), "final": final, "maybe_duplicate": maybe_dup,
        "error": "",
    }  # fmt: skip
    return [values.get(f, "") for f in ATTEMPT_FIELDS]  # a column added since: empty


def receipt(i: int, sink: str, at: float, outcome: str = "accepted"):
    values = {
        "time": f"{T0 + at:.6f}", "sink": sink, "worker": 0, "session": f"{sink}.1",
        "peer": "127.0.0.1", "msg_id": f"{RUN}-{i}", "message_id": "", "mail_from": "a@x.test",
        "rcpt_count": 1, "size": 1000, "outcome": outcome, "queue_id": "q",
        "helo": "maildrill.test", "rcpts": f"user{i}@x.test",
    }  # fmt: skip
    return [values.get(f, "") for f in RECEIPT_FIELDS]  # a column added since: empty


def fault(kind: str, state: str, at: float, sink: str = "primary", origin: str = "schedule"):
    values = {
        "time": f"{T0 + at:.6f}", "sink": sink, "worker": 0, "kind": kind, "state": state,
        "fault_id": f"{kind}-1", "origin": origin, "params": "{}",
    }  # fmt: skip
    return [values[f] for f in FAULT_FIELDS]


def write(path: Path, header, rows, torn: str = "") -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        f.write(torn)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A primary-down run: fault 10.0-20.0 s; 1 msg/s on primary, then the secondary."""
    attempts, primary, secondary = [], [], []
    # Messages 0-9: primary, accepted, 10 ms each.
    for i in range(10):
        attempts.append(attempt(i, "primary", i, i + 0.01))
        primary.append(receipt(i, "primary", i + 0.009))
    # Message 10 at 10.1: refused on the primary at 10.2, accepted on the secondary at 10.5.
    attempts.append(attempt(10, "primary", 10.1, 10.2, "refused", final=0, phase="connect",
                            code="", enhanced=""))  # fmt: skip
    attempts.append(attempt(10, "secondary", 10.4, 10.5, attempt_no=2, intended=10.1))
    secondary.append(receipt(10, "secondary", 10.49))
    # Messages 11-19 on the secondary.
    for i in range(11, 20):
        attempts.append(attempt(i, "secondary", i, i + 0.02))
        secondary.append(receipt(i, "secondary", i + 0.019))
    # Message 20: back on the primary at 21.0 after the clear at 20.0.
    attempts.append(attempt(20, "primary", 21.0, 21.3))
    primary.append(receipt(20, "primary", 21.29))
    # Message 21: the primary received it twice (a real duplicate).
    attempts.append(attempt(21, "primary", 22.0, 22.01))
    primary.append(receipt(21, "primary", 22.009))
    primary.append(receipt(21, "primary", 22.5))
    # Message 22: dropped after the dot on the primary, never retried: a phantom.
    attempts.append(attempt(22, "primary", 23.0, 23.01, "dropped", phase="dot", code="",
                            enhanced="", maybe_dup=1))  # fmt: skip
    primary.append(receipt(22, "primary", 23.005, outcome="dropped"))
    # Message 23: accepted by the client, but no sink has it: lost.
    attempts.append(attempt(23, "primary", 24.0, 24.01))
    # Message 24: rejected for good (550).
    attempts.append(attempt(24, "primary", 25.0, 25.01, "rejected", phase="rcpt", code=550,
                            enhanced="5.1.1"))  # fmt: skip
    write(tmp_path / "attempts.csv", ATTEMPT_FIELDS, attempts,
          torn="hand,local,hand-99,promo")  # a torn last line  # fmt: skip
    write(tmp_path / "receipts-primary.csv", RECEIPT_FIELDS, primary)
    write(tmp_path / "receipts-secondary.csv", RECEIPT_FIELDS, secondary)
    write(tmp_path / "faults-primary.csv", FAULT_FIELDS,
          [fault("latency", "start", -1.0, origin="behaviour"),
           fault("down", "start", 10.0), fault("down", "stop", 20.0)])  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"run_id": RUN, "t0": T0, "planned": 27}))
    (tmp_path / "harness.json").write_text(json.dumps({"partial": False}))
    return tmp_path


def test_counts(run_dir):
    m = summarise(run_dir)["messages"]
    assert m == {
        "planned": 27,
        "attempted": 25,
        "accepted": 23,  # 0-21 and 23
        "failed": 2,  # 22 (dropped, final) and 24 (rejected)
        "received_unique": 23,  # 0-22
        "lost": 1,  # 23
        "duplicates": 1,  # 21
        "phantom": 1,  # 22
        "stranded": 0,
        "not_sent": 2,
        "in_flight": 0,
        "unverified": 0,
        "retried": 1,  # 10: refused by the primary, accepted by the secondary
        "suppressed": 0,
        "refused_downstream": 0,
    }


def test_failover_timings(run_dir):
    (f,) = summarise(run_dir)["failovers"]
    assert (f["target"], f["kind"]) == ("primary", "down")
    assert f["onset_s"] == pytest.approx(10.0)
    assert f["cleared_s"] == pytest.approx(20.0)
    assert f["detection_s"] == pytest.approx(0.2)
    assert f["failover_s"] == pytest.approx(0.5)
    assert f["failback_s"] == pytest.approx(1.3)
    assert f["messages_delayed"] == 1
    assert f["messages_failed"] == 0
    # Message 10 was meant to go at 10.1 and got in at 10.5; unaffected ones take 10 ms.
    assert f["added_latency_ms"]["max"] == pytest.approx(390.0, abs=1)
    # Nothing was accepted between 9.01 (message 9) and 10.5 (message 10): 0.5 s of it
    # inside the window; later gaps of one second between messages are the longest.
    assert f["longest_gap_s"] == pytest.approx(1.0, abs=0.02)
    assert f["recovery_s"] == pytest.approx(1.0)


def test_torn_line_is_skipped_counted_and_reported(run_dir):
    s = summarise(run_dir)
    assert s["journal_problems"]["skipped_lines"] == {"attempts.csv": 1}


def test_corrupt_rows_are_skipped_not_fatal(run_dir):
    with (run_dir / "receipts-secondary.csv").open("a") as f:
        f.write("\n\x00\x00garbage,,\n" + ",".join(["x"] * len(RECEIPT_FIELDS)) + "\n")
    s = summarise(run_dir)
    assert s["messages"]["received_unique"] == 23
    # An empty line, a NUL-garbage line and a row of the right shape with non-numbers.
    assert s["journal_problems"]["skipped_lines"]["receipts-secondary.csv"] == 3


def test_errors_and_latency(run_dir):
    s = summarise(run_dir)
    assert s["errors"] == {"550 5.1.1": 1, "dropped at dot": 1, "refused at connect": 1}
    assert s["latency_ms"]["per_server"]["primary"]["p50"] == pytest.approx(10.0, abs=0.1)
    assert s["throughput"]["per_server"]["secondary"]["accepted"] == 10


def test_slo_verdicts(run_dir, tmp_path):
    from loadtest.analysis.slo import check

    verdict = check(["lost == 0", "failover_s <= 1", "recovery_s <= 0.5"],
                    {"lost": 1, "failover_s": 0.5, "recovery_s": None})  # fmt: skip
    assert [c.passed for c in verdict.checks] == [False, True, False]
    assert verdict.passed is False


def test_write_produces_summary_json(run_dir):
    (run_dir / "scenario.yaml").write_text(runs.DRILL_SCENARIO)
    summary_mod.write(run_dir)
    data = json.loads((run_dir / "summary.json").read_text())
    for key in ("scenario", "started_at", "duration_s", "partial", "messages", "throughput",
                "latency_ms", "errors", "failovers", "slo"):  # fmt: skip
        assert key in data
    assert data["partial"] is False


def test_latency_by_phase_around_the_fault(run_dir):
    (f,) = summarise(run_dir)["failovers"]
    phases = f["phases"]
    assert [phases[p]["accepted"] for p in ("before", "during", "after")] == [10, 10, 3]
    assert phases["before"]["latency_ms"]["p50"] == pytest.approx(10.0, abs=0.05)
    assert phases["during"]["latency_ms"]["p50"] == pytest.approx(20.0, abs=0.05)
    # Message 10 waited from 10.1 (intended) to 10.5: the response time shows the wait.
    assert phases["during"]["response_time_ms"]["max"] == pytest.approx(400.0, abs=0.5)


def test_hdr_percentiles_match_exact_and_merge_across_workers():
    import numpy as np

    from loadtest.analysis import histograms

    rng = np.random.default_rng(1)
    seconds = rng.lognormal(mean=-4, sigma=1.0, size=20_000)
    workers = rng.integers(0, 3, size=seconds.size)
    # one histogram per worker, added, as HdrHistogram adds them: the same counts
    by_worker = [histograms.Slots.of(seconds[workers == w]).histogram() for w in range(3)]
    total = by_worker[0]
    for h in by_worker[1:]:
        total.add(h)
    added = histograms.Slots.of(seconds[workers == 0])
    for w in (1, 2):
        added = added + histograms.Slots.of(seconds[workers == w])
    single = histograms.Slots.of(seconds)
    assert np.array_equal(added.counts, single.counts)
    merged = added.percentiles_ms()
    assert merged == histograms.percentiles_ms(seconds)
    for p in (50, 90, 95, 99):
        assert merged[f"p{p}"] == round(total.get_value_at_percentile(p) / 1000.0, 3)
    assert merged["max"] == round(total.get_max_value() / 1000.0, 3)
    for p in (50, 90, 95, 99):
        exact = float(np.percentile(seconds * 1000, p))
        assert merged[f"p{p}"] == pytest.approx(exact, rel=0.002)
    assert merged["max"] == pytest.approx(seconds.max() * 1000, rel=0.001)


def test_onset_is_inferred_for_servers_that_are_not_sinks(run_dir):
    from loadtest.scenario import parse_scenario

    (run_dir / "faults-primary.csv").unlink()
    scenario = parse_scenario(
        {
            "servers": [{"name": "primary", "port": 2525}, {"name": "secondary", "port": 2526}],
            "campaign": {"schedule": [{"duration_s": 27, "rate": 1}]},
        }
    )
    failovers = summarise(run_dir, scenario)["failovers"]
    (f,) = [f for f in failovers if f["target"] == "primary"]
    assert f["onset_source"] == "first failed attempt"
    # Trouble seen from 10.1 (the refused attempt's start) to 23.01 (the drop's end).
    assert f["onset_s"] == pytest.approx(10.1)
    assert f["failover_s"] == pytest.approx(0.4)
    assert f["failback_s"] is None or f["failback_s"] >= 0


def test_fault_timing_slos_do_not_apply_without_a_fault():
    from loadtest.analysis.slo import check

    none = check(["failover_s <= 5", "lost == 0"], {"failover_s": None, "lost": 0}, faults=0)
    assert none.passed is True
    assert none.checks[0].note == "no fault in this run"
    unmeasured = check(["failover_s <= 5"], {"failover_s": None}, faults=1)
    assert unmeasured.passed is False
    assert unmeasured.checks[0].note == "not measured"


def test_an_mta_splitting_a_message_per_domain_is_not_a_duplicate():
    """Postfix delivers a message for two domains as two deliveries, one recipient each:
    the recipients add up to what was sent, so no duplicate; a second copy of either is."""
    import pandas as pd

    from loadtest.analysis import reconcile

    def frame(fields, rows):
        return pd.DataFrame(rows, columns=list(fields))

    sent = [attempt(i, "primary", 0.1 * i, 0.1 * i + 0.01) for i in range(3)]
    for row in sent:
        row[ATTEMPT_FIELDS.index("recipients")] = 2
    # 0: split over two sinks; 1: one delivery with both recipients; 2: split, then the
    # gmail half again (the MTA lost the 250 and retried).
    halves = [
        receipt(0, "gmail", 1.0), receipt(0, "yahoo", 1.1), receipt(1, "gmail", 1.2),
        receipt(2, "gmail", 1.3), receipt(2, "yahoo", 1.3), receipt(2, "gmail", 2.0),
    ]  # fmt: skip
    rcpt_count = RECEIPT_FIELDS.index("rcpt_count")
    halves[2][rcpt_count] = 2
    attempts = frame(ATTEMPT_FIELDS, sent).astype({"recipients": float})
    receipts = frame(RECEIPT_FIELDS, halves).astype({"rcpt_count": float})
    per = reconcile.messages(attempts, receipts)
    assert list(reconcile.duplicated(per)) == [False, False, True]
    counts = reconcile.count(per, planned=3, run_id=RUN)
    assert (counts.received_unique, counts.duplicates, counts.lost) == (3, 1, 0)


def scenario(servers: list[dict]) -> Scenario:
    return parse_scenario(
        {"servers": servers, "campaign": {"schedule": [{"duration_s": 30, "rate": 1}]}}, "t"
    )


def test_mail_a_server_maildrill_cannot_see_past_took_is_unverified_not_lost(run_dir):
    """Message 23 was accepted by the primary and no sink has it: lost when the primary is
    a sink, unverified when it is a server maildrill does not own."""
    foreign = scenario([{"name": "primary", "port": 2525},
                        {"name": "secondary", "local": True}])  # fmt: skip
    m = summarise(run_dir, foreign)["messages"]
    assert (m["lost"], m["unverified"], m["received_unique"]) == (0, 1, 23)
    owned = scenario([{"name": "primary", "local": True}, {"name": "secondary", "local": True}])
    m = summarise(run_dir, owned)["messages"]
    assert (m["lost"], m["unverified"]) == (1, 0)


def proxy_rows(name: str) -> list[list]:
    rows = []
    for i, at, cause in ((0, 1.005, ""), (1, 2.005, ""), (2, 3.005, "drop"), (2, 4.005, "")):
        values = {
            "time": f"{T0 + at:.6f}", "proxy": name, "session": f"{name}.{i}",
            "peer": "127.0.0.1", "event": "message", "msg_id": f"{RUN}-{i}", "code": 250,
            "size": 1000, "bytes_up": "", "bytes_down": "", "cause": cause, "detail": "",
        }  # fmt: skip
        rows.append([values[f] for f in PROXY_FIELDS])
    rows.append([f"{T0 + 6:.6f}", name, f"{name}.0", "127.0.0.1", "close", "", "", "", 5000,
                 400, "client", ""])  # fmt: skip
    return rows


@pytest.mark.parametrize(("recipients", "chain"), [(1, False), (2, False), (1, True)])
def test_a_proxy_witnesses_what_the_server_behind_it_accepted(tmp_path, recipients, chain):
    """Through a proxy in front of a server maildrill does not own, the server's 250 to
    the dot (seen on the wire) counts as its receipt: a drop after that 250 and the
    client's retry make a duplicate (whatever the recipients: the wire record has no
    count); a 250 the proxy never saw is lost. Of a chain of proxies, only the one next
    to the server witnesses (else every message would count twice)."""
    servers = [{"name": "edge", "local": True, "sink": {"mode": "proxy", "upstream": "mx"}},
               {"name": "mx", "port": 2525}, {"name": "secondary", "local": True}]  # fmt: skip
    front = "edge"
    if chain:
        servers.append({"name": "outer", "local": True,
                        "sink": {"mode": "proxy", "upstream": "edge"}})  # fmt: skip
        front = "outer"
        write(tmp_path / "proxy-outer.csv", PROXY_FIELDS, proxy_rows("outer"))
    attempts = [
        attempt(0, front, 1.0, 1.01), attempt(1, front, 2.0, 2.01),
        attempt(2, front, 3.0, 3.01, "dropped", final=0, code="", enhanced=""),
        attempt(2, front, 4.0, 4.01, attempt_no=2), attempt(3, front, 5.0, 5.01),
    ]  # fmt: skip
    for row in attempts:
        row[ATTEMPT_FIELDS.index("recipients")] = recipients
    write(tmp_path / "attempts.csv", ATTEMPT_FIELDS, attempts)
    write(tmp_path / "proxy-edge.csv", PROXY_FIELDS, proxy_rows("edge"))
    (tmp_path / "run.json").write_text(json.dumps({"run_id": RUN, "t0": T0, "planned": 4}))
    summary = summarise(tmp_path, scenario(servers))
    m = summary["messages"]
    assert (m["accepted"], m["received_unique"], m["duplicates"], m["lost"]) == (4, 3, 1, 1)
    assert m["unverified"] == 0
    assert summary["proxies"]["edge"] == {
        "upstream": "mx", "sessions": 0, "sessions_ended_by": {"client": 1}, "messages": 4,
        "server_replies": {"2xx": 4}, "cut_by_fault": {"drop": 1}, "accepted_then_cut": 1,
        "unanswered_at_session_end": 0, "bytes_up": 5000, "bytes_down": 400,
    }  # fmt: skip


def test_journals_without_optional_columns_still_add_up(tmp_path):
    """Receipts of an older sink (no outcome, rcpt_count, helo) and no receipts at all
    for an MTA's path: counted, not a crash."""
    old = [f for f in RECEIPT_FIELDS if f not in ("outcome", "rcpt_count", "helo")]
    rows = [receipt(0, "primary", 0.5), receipt(0, "primary", 0.6)]
    write(tmp_path / "receipts-primary.csv", old,
          [[r[RECEIPT_FIELDS.index(f)] for f in old] for r in rows])  # fmt: skip
    write(tmp_path / "attempts.csv", ATTEMPT_FIELDS,
          [attempt(0, "primary", 0.1, 0.2), attempt(1, "mta", 0.3, 0.4)])  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"run_id": RUN, "t0": T0, "planned": 2}))
    servers = [{"name": "primary", "local": True}, {"name": "sink", "local": True},
               {"name": "mta", "postfix": {"relay": "sink"}}]  # fmt: skip
    summary = summarise(tmp_path, scenario(servers))
    m = summary["messages"]
    assert (m["received_unique"], m["duplicates"], m["lost"]) == (1, 1, 1)
    assert summary["mta"]["mta"]["delivered"] == 0
    (tmp_path / "receipts-primary.csv").unlink()
    summary = summarise(tmp_path, scenario(servers))
    assert summary["mta"]["mta"]["undelivered"] == 1


def test_a_backup_mx_in_front_of_a_server_maildrill_does_not_own(tmp_path):
    """What the backup forwarded there is unverified, what its upstream refused for good
    (`bounced`) is refused downstream (not lost: the sender gets a bounce), what it still
    holds is stranded."""
    servers = [{"name": "bk", "local": True, "sink": {"mode": "backup-mx", "upstream": "mx"}},
               {"name": "mx", "port": 2525}]  # fmt: skip
    write(tmp_path / "attempts.csv", ATTEMPT_FIELDS,
          [attempt(i, "bk", i, i + 0.01) for i in range(3)])  # fmt: skip
    write(tmp_path / "receipts-bk.csv", RECEIPT_FIELDS,
          [receipt(i, "bk", i + 0.005, outcome="queued") for i in range(3)])  # fmt: skip
    relay_rows = []
    for i, event in ((0, "queued"), (1, "queued"), (2, "queued"), (0, "forwarded"),
                     (1, "bounced")):  # fmt: skip
        values = {"time": f"{T0 + 5 + i:.6f}", "sink": "bk", "worker": 0,
                  "msg_id": f"{RUN}-{i}", "queue_id": f"q{i}", "event": event, "upstream": "mx",
                  "attempt": 1, "code": 250 if event == "forwarded" else 550, "enhanced": "",
                  "error": "", "queued_at": f"{T0 + i:.6f}"}  # fmt: skip
        relay_rows.append([values[f] for f in RELAY_FIELDS])
    write(tmp_path / "relay-bk.csv", RELAY_FIELDS, relay_rows)
    (tmp_path / "run.json").write_text(json.dumps({"run_id": RUN, "t0": T0, "planned": 3}))
    m = summarise(tmp_path, scenario(servers))["messages"]
    assert (m["accepted"], m["unverified"], m["lost"], m["stranded"]) == (3, 1, 0, 1)
    assert m["refused_downstream"] == 1
    assert (m["received_unique"], m["duplicates"]) == (0, 0)


def retried_in_journal(run_dir: Path, run_id: str) -> int:
    """Accepted messages with more than one attempt, counted from attempts.csv by hand."""
    attempts: dict[str, int] = {}
    accepted: set[str] = set()
    with (run_dir / "attempts.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["run_id"] != run_id or None in row.values():  # a torn last line
                continue
            attempts[row["msg_id"]] = attempts.get(row["msg_id"], 0) + 1
            if row["outcome"] == "accepted":
                accepted.add(row["msg_id"])
    return sum(1 for msg_id in accepted if attempts[msg_id] > 1)


def test_retried_counts_accepted_messages_that_needed_more_than_one_attempt(run_dir, tmp_path):
    drill = runs.drill(tmp_path / "drill")
    # The hand-built drill: message 16 refused then accepted elsewhere, message 30 deferred
    # (421) then accepted; message 35 dropped once and never retried is not accepted.
    assert summarise(drill)["messages"]["retried"] == retried_in_journal(drill, "hand-drill") == 2
    assert summarise(run_dir)["messages"]["retried"] == retried_in_journal(run_dir, RUN)
