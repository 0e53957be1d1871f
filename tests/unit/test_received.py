"""A run without the sender's journal (another sender into `maildrill sinks`), hand-built
with known answers: receipts per server, gaps, first receipts elsewhere and back,
duplicates by X-Maildrill-Id or Message-ID, what needs the sender's journal, SLOs on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.received import NEEDS_SENDER_JOURNAL
from loadtest.analysis.slo import NEEDS_SENDER_NOTE
from loadtest.analysis.summary_model import SLO_METRICS
from loadtest.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SLO_FAILED, main
from maildrill.records import FaultRecord, ReceiptRecord
from tests import runs
from tests.runs import T0, write_csv


def receipt(sink: str, at: float, msg_id: str, message_id: str = "", outcome: str = "accepted"):
    return ReceiptRecord(
        time=T0 + at, sink=sink, worker=0, session=f"{sink}.1", peer="127.0.0.1",
        msg_id=msg_id, message_id=message_id, mail_from="a@example.com", rcpt_count=1,
        size=1000, outcome=outcome, queue_id="", helo="platform.test",
    )  # fmt: skip


def fault(sink: str, state: str, at: float) -> FaultRecord:
    return FaultRecord(
        time=T0 + at, sink=sink, worker=0, kind="down", state=state, fault_id="down-1",
        origin="command", params="{}",
    )  # fmt: skip


PRIMARY = [
    receipt("primary", 0.0, "ext-0"),
    receipt("primary", 0.5, "ext-1"),
    receipt("primary", 1.0, "ext-2"),
    receipt("primary", 1.2, "", "<only@platform.test>"),  # a Message-ID, no X-Maildrill-Id
    receipt("primary", 1.5, "ext-3"),
    receipt("primary", 5.2, "ext-8"),
    receipt("primary", 5.6, "ext-9"),
]
SECONDARY = [
    receipt("secondary", 2.4, "ext-4"),
    receipt("secondary", 2.9, "ext-5"),
    receipt("secondary", 3.0, "ext-6", outcome="dropped"),  # cut before its 250
    receipt("secondary", 4.1, "ext-7"),
    receipt("secondary", 4.3, "ext-1"),  # ext-1 again: a duplicate
    receipt("secondary", 4.4, "", "<only@platform.test>"),  # and this one too
    receipt("secondary", 4.6, ""),  # neither header
]


def sinks_dir(run_dir: Path) -> Path:
    """What `maildrill sinks` leaves after another sender's run: the primary down (by the
    control API) from 2.0 s to 5.0 s; a third sink that received nothing.

    Acknowledged receipts, all servers: 0, .5, 1, 1.2, 1.5 | 2.4, 2.9, 4.1, 4.3, 4.4, 4.6 |
    5.2, 5.6 (the dropped one at 3.0 is no acknowledgement): longest gap 2.9 -> 4.1 = 1.2.
    """
    run_dir.mkdir(parents=True)
    write_csv(run_dir / "receipts-primary.csv", ReceiptRecord, PRIMARY)
    write_csv(run_dir / "receipts-secondary.csv", ReceiptRecord, SECONDARY)
    write_csv(run_dir / "receipts-tertiary.csv", ReceiptRecord, [])
    write_csv(run_dir / "faults-primary.csv", FaultRecord,
              [fault("primary", "start", 2.0), fault("primary", "stop", 5.0)])  # fmt: skip
    write_csv(run_dir / "faults-tertiary.csv", FaultRecord, [])
    return run_dir


SCENARIO = """\
name: external
servers:
  - {name: primary, priority: 10, local: true}
  - {name: secondary, priority: 20, local: true}
  - {name: tertiary, priority: 30, local: true}
campaign:
  streams: [{name: promotional}]
  schedule: [{duration_s: 10, rate: 1}]
slo: [%s]
"""


def external(run_dir: Path, rules: str) -> Path:
    """The same, with the harness.json and scenario.yaml of a `maildrill sinks` that writes
    them: t0 (its timeline's start) 1 s before the first receipt, sender external."""
    sinks_dir(run_dir)
    (run_dir / "scenario.yaml").write_text(SCENARIO % rules)
    harness = {"partial": False, "sender": "external", "t0": T0 - 1.0, "faults": [],
               "events": [], "finished_at": T0 + 7.0}  # fmt: skip
    (run_dir / "harness.json").write_text(json.dumps(harness))
    return run_dir


def test_receipts_alone_give_the_known_answers(tmp_path):
    run = RunDir.load(sinks_dir(tmp_path / "run"))
    assert not run.has_sender_journal
    summary = summary_mod.summarise(run)
    assert summary.started_at == T0  # no harness.json: the first journal row
    assert summary.duration_s == 5.6
    r = summary.received
    assert r is not None
    assert (r.receipts, r.messages, r.duplicates, r.extra_copies) == (14, 11, 2, 2)
    assert (r.by_message_id, r.unidentified, r.longest_gap_s) == (1, 1, pytest.approx(1.2))
    servers = {
        name: (s.receipts, s.dropped, s.first_s, s.last_s, s.longest_gap_s)
        for name, s in r.servers.items()
    }
    assert servers == {
        "primary": (7, 0, 0.0, 5.6, pytest.approx(3.7)),  # 1.5 -> 5.2
        "secondary": (6, 1, 2.4, 4.6, pytest.approx(2.4)),  # 0 (first anywhere) -> 2.4
        "tertiary": (0, 0, None, None, pytest.approx(5.6)),  # kept journals, got nothing
    }
    assert list(r.servers) == ["primary", "secondary", "tertiary"]  # by file name
    assert (summary.messages.received_unique, summary.messages.duplicates) == (11, 2)
    (f,) = summary.failovers
    assert (f.target, f.kind, f.onset_s, f.cleared_s) == ("primary", "down", 2.0, 5.0)
    assert f.measured_from == "receipts"
    assert f.failover_s == pytest.approx(0.4)  # secondary at 2.4
    assert f.failback_s == pytest.approx(0.2)  # primary at 5.2
    assert f.longest_gap_s == pytest.approx(1.2)  # 2.9 -> 4.1 (the dropped 3.0 is no 250)
    assert f.longest_gap_by_server_s == pytest.approx(
        {"primary": 3.0, "secondary": 1.2, "tertiary": 3.0}
    )
    # 5 receipts in the 2 s before the onset: 2.5/s; [4, 5) has 4 >= 90 %: 5 - 2 = 3 s.
    assert f.recovery_s == pytest.approx(3.0)
    assert f.detection_s is None
    assert summary.needs_sender_journal == list(NEEDS_SENDER_JOURNAL)
    assert summary.partial  # no harness.json: nothing says the sinks stopped cleanly


def test_a_maildrill_sinks_directory_is_not_damaged_for_lacking_attempts_and_run_json(tmp_path):
    """harness.json says the run finished, sender external: no attempts.csv and no run.json
    is what such a run leaves, not damage; its t0 is the timeline's start."""
    summary = summary_mod.write(external(tmp_path / "run", ""), reports=False)
    assert not summary.partial
    assert summary.started_at == T0 - 1.0
    assert summary.received is not None
    assert summary.received.servers["primary"].first_s == 1.0
    assert (summary.failovers[0].onset_s, summary.failovers[0].cleared_s) == (3.0, 6.0)
    assert summary.failovers[0].failover_s == pytest.approx(0.4)  # durations do not move


def test_slos_on_what_needs_the_senders_journal_are_not_measured(tmp_path):
    rules = "lost == 0, p95_latency_ms <= 500, accepted_ratio >= 0.9, detection_s <= 1, " \
        "duplicates == 0, failover_s <= 1, failback_s <= 1, recovery_s <= 5"  # fmt: skip
    summary = summary_mod.write(external(tmp_path / "run", rules), reports=False)
    checks = {c.name: (c.value, c.passed, c.note) for c in summary.slo.checks}
    for name in ("lost", "p95_latency_ms", "accepted_ratio", "detection_s"):
        assert checks[name] == (None, False, NEEDS_SENDER_NOTE), name
    assert checks["duplicates"] == (2, False, "")
    assert checks["failover_s"] == (pytest.approx(0.4), True, "")
    assert checks["failback_s"] == (pytest.approx(0.2), True, "")
    assert checks["recovery_s"] == (pytest.approx(3.0), True, "")
    assert not summary.slo.passed


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        ("failover_s <= 1, failback_s <= 1", EXIT_OK),
        ("failover_s <= 0.1", EXIT_SLO_FAILED),
        ("lost == 0", EXIT_SLO_FAILED),  # not measured: no pass
    ],
)
def test_report_exit_codes_without_the_senders_journal(tmp_path, capsys, rules, code):
    run_dir = external(tmp_path / "run", rules)
    assert main(["report", str(run_dir)]) == code
    out = capsys.readouterr().out
    assert "received: 14 receipts, 11 messages, 2 duplicates (2 extra copies; 1 known by " \
        "Message-ID alone, 1 receipts with no id); longest gap 1.2 s" in out  # fmt: skip
    assert "  primary: 7 receipts (0 dropped), first 1.0 s, last 6.6 s, longest gap 3.7 s" in out
    assert "Not measured: planned, attempted, accepted, failed, lost," in out
    assert "fault down on primary at 3.00 s: first receipt elsewhere after 0.4 s, first " \
        "receipt back after 0.2 s, longest gap 1.2 s (per server: primary 3.0 s, " \
        "secondary 1.2 s, tertiary 3.0 s)" in out  # fmt: skip


def test_a_damaged_receipts_journal_still_exits_2(tmp_path, capsys):
    run_dir = sinks_dir(tmp_path / "run")
    (run_dir / "receipts-secondary.csv").write_text("not,a,receipts,header\n")
    assert main(["report", str(run_dir)]) == EXIT_BAD_INPUT
    assert "receipts-secondary.csv" in capsys.readouterr().err


def test_the_report_shows_the_receipts_and_says_what_it_cannot(tmp_path, capsys):
    run_dir = external(tmp_path / "run", "lost == 0")
    main(["report", str(run_dir)])
    capsys.readouterr()
    md = (run_dir / "report.md").read_text()
    assert "No sender's journal (attempts.csv)" in md.split("\n")[4]  # in the verdict
    assert "| primary | 7 | 0 | 1 | 6.6 | 3.7 |" in md
    assert "| secondary | 6 | 1 | 3.4 | 5.6 | 2.4 |" in md
    assert "| tertiary | 0 | 0 | n/a | n/a | 5.6 |" in md
    assert "| primary | down | 3 | 6 | 0.4 | 0.2 | 3 | 1.2 | primary 3, secondary 1.2, " \
        "tertiary 3 |" in md  # fmt: skip
    assert "| received more than once | 2 |" in md
    assert "| lost == 0 | 0 | n/a | FAIL | not measured: needs the sender's journal " in md
    assert "## Latency" not in md
    assert "![Receipts per server](plots/received.png)" in md
    assert (run_dir / "plots" / "received.png").exists()
    series = (run_dir / "series" / "received.csv").read_text().splitlines()
    assert series[0] == "second,server,received"
    per_server: dict[str, int] = {}
    for line in series[1:]:
        _, server, count = line.split(",")
        per_server[server] = per_server.get(server, 0) + int(count)
    assert per_server == {"primary": 7, "secondary": 6, "tertiary": 0}


def test_a_sink_behind_a_proxy_counts_for_the_proxy(tmp_path):
    """The sender addresses the proxy: receipts at the sink behind it are the proxy's, so a
    fault on the proxy does not count them as mail that failed over."""
    run_dir = sinks_dir(tmp_path / "run")
    (run_dir / "receipts-primary.csv").unlink()
    behind = [dataclasses.replace(r, sink="primary-mta") for r in PRIMARY]
    write_csv(run_dir / "receipts-primary-mta.csv", ReceiptRecord, behind)
    (run_dir / "scenario.yaml").write_text(
        SCENARIO.replace(
            "  - {name: primary, priority: 10, local: true}\n",
            "  - {name: primary, priority: 10, local: true,"
            " sink: {mode: proxy, upstream: primary-mta}}\n"
            "  - {name: primary-mta, priority: 10, local: true}\n",
        )
        % ""
    )
    summary = summary_mod.summarise(RunDir.load(run_dir))
    assert summary.received is not None
    assert list(summary.received.servers) == ["primary", "secondary", "tertiary"]
    assert summary.received.servers["primary"].receipts == 7
    assert summary.failovers[0].failback_s == pytest.approx(0.2)


def test_a_run_with_the_senders_journal_is_summarised_as_before(tmp_path):
    """`received` stays null and nothing is listed as unmeasured; the new per-server gap of
    each fault comes from accepted attempts (the hand-built drill: primary down 4 -> 7 s,
    nothing accepted there; the secondary's first accepted end is 4.27 s)."""
    summary = summary_mod.summarise(RunDir.load(runs.drill(tmp_path / "run")))
    assert summary.received is None
    assert summary.needs_sender_journal == []
    (f,) = summary.failovers
    assert f.measured_from == "attempts"
    assert f.longest_gap_by_server_s == pytest.approx({"primary": 3.0, "secondary": 0.27})


# What an SLO can measure from the receipts alone; every other metric is listed, through
# its summary key, in NEEDS_SENDER_JOURNAL. A metric added to SLO_METRICS fails the test
# below until it is one or the other.
FROM_RECEIPTS = {"duplicates", "failover_s", "failback_s", "recovery_s"}
# Counted from the receipts and refusals of sinks with verify: (loadtest.analysis.auth):
# with no such sink, as here, not measured (null), whoever sent the mail.
FROM_VERIFYING_SINKS = {
    "dmarc_fail", "unauthenticated", "auth_refused", "spf_pass_share", "dkim_pass_share",
    "dmarc_pass_share", "ptr_pass_share", "auth_clean_share",
}  # fmt: skip


def test_every_slo_metric_is_measured_from_receipts_or_needs_the_senders_journal(tmp_path):
    rules = ", ".join(f"{name} <= 1000000" for name in SLO_METRICS)
    summary = summary_mod.write(external(tmp_path / "run", rules), reports=False)
    for check in summary.slo.checks:
        if check.name in FROM_RECEIPTS:
            assert (check.value is not None, check.note) == (True, ""), check
        elif check.name in FROM_VERIFYING_SINKS:
            assert (check.value, check.note) == (None, "not measured"), check
        else:
            assert (check.value, check.note) == (None, NEEDS_SENDER_NOTE), check
