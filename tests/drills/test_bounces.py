"""The bundled `bounces` drill, cut short: the providers' presets refuse the plan's dead
addresses; the summary's bounce counts agree with the sinks' refusals, the attempts
journal and the campaign plan, each counted here on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loadtest.campaign import MessageFactory
from loadtest.scenario import load_scenario
from maildrill.mailboxes import local_matches
from tests.helpers import read_csv

pytestmark = pytest.mark.slow

# 3 s at 40 msgs/s, one sender (so messages go one after the other and "earlier" is plain),
# many dead addresses from a few per domain, policy blocks often enough to be seen.
SHORT_BOUNCES = [
    "--set", "campaign.schedule.0.duration_s=3",
    "--set", "campaign.drain_s=1",
    "--set", "users=1",
    "--set", "campaign.unknown_recipients=0.15",
    "--set", "campaign.unknown_addresses=3",
    "--set", "servers.0.sink.behaviours.4.probability=0.05",
    "--set", "slo.0=bounce_rate <= 0.9",
]  # fmt: skip


def suppressing(cell_code: int, enhanced: str) -> bool:
    """The rule, written again: a 5xx unless its subject is system, content or policy."""
    subject = enhanced.split(".")[1] if enhanced.count(".") == 2 else ""
    return 500 <= cell_code < 600 and subject not in ("3", "6", "7")


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("bounces") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "bounces", "--out", str(run_dir),
         *SHORT_BOUNCES],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def test_bounce_counts_are_the_sinks_refusals(drill):
    run_dir, summary = drill
    b = summary["bounces"]
    by_status: Counter[str] = Counter()
    for r in read_csv(run_dir / "refusals-primary.csv"):
        key = f"{r['code']} {r['enhanced']}".strip()
        # A refusal after DATA refuses every recipient the message still had.
        by_status[key] += int(r["rcpt_count"]) if r["stage"] in ("data", "dot") else 1
    # Each provider's preset and the policy blocks were met.
    assert {"550 5.1.1", "552", "550 5.5.0", "550 5.7.1"} <= set(by_status)
    assert b["by_status"] == dict(by_status)
    by_class: Counter[str] = Counter()
    for key, n in by_status.items():
        code, _, enhanced = key.partition(" ")
        klass, subject = enhanced.split(".")[:2] if enhanced else (code[0], "x")
        by_class[f"{klass}.{subject}.x"] += n
    assert b["by_class"] == dict(by_class)
    assert b["hard"] == sum(by_status.values())
    assert b["soft"] == 0
    assert b["rate"] == pytest.approx(b["hard"] / b["attempted"], abs=1e-6)
    checks = {c["name"]: c for c in summary["slo"]["checks"]}
    assert checks["bounce_rate"]["value"] == b["rate"]


def test_every_recipient_is_counted_once_and_suppression_holds(drill):
    run_dir, summary = drill
    b, m = summary["bounces"], summary["messages"]
    scenario = load_scenario(run_dir / "scenario.yaml")
    run_id = summary["run_id"]
    plan = MessageFactory(scenario.streams(), run_id, scenario.campaign.seed)
    planned = m["planned"]
    assert b["unknown"] == sum(
        local_matches(a) for k in range(planned) for a in plan.envelope(k)[1]
    )
    rows = sorted(read_csv(run_dir / "attempts.csv"), key=lambda r: float(r["start"]))
    suppressed: set[str] = set()
    bounced = sent = skipped = repeats = 0
    not_sent_rows = 0
    receipts = {r["msg_id"]: int(r["rcpt_count"]) for r in read_csv(
        run_dir / "receipts-primary.csv")}  # fmt: skip
    for r in rows:
        recipients = plan.envelope(int(r["msg_id"].rpartition("-")[2]))[1]
        cells = r["rcpt_replies"].split(";")
        assert len(cells) == len(recipients)
        # Never sent to an address after it hard-bounced; left out exactly then.
        for address, cell in zip(recipients, cells, strict=True):
            assert (cell == "s") == (address.lower() in suppressed), (r["msg_id"], cell)
        not_sent_rows += r["outcome"] == "suppressed"
        skipped += cells.count("s")
        sent += sum(c not in ("s", "f") for c in cells)
        learnt = []
        for address, cell in zip(recipients, cells, strict=True):
            code, _, enhanced = cell.partition(" ")
            if cell in ("s", "f", ""):
                continue
            if code.startswith("2") and r["outcome"] == "rejected":  # refused after DATA
                code, enhanced = r["code"], r["enhanced"]
            if code.startswith("5"):
                bounced += 1
                if suppressing(int(code), enhanced):
                    repeats += address.lower() in learnt
                    learnt.append(address.lower())
        suppressed |= set(learnt)
        if r["outcome"] == "accepted":  # delivered to the recipients its RCPTs took
            assert receipts.pop(r["msg_id"]) == cells.count("250")
    assert receipts == {}
    assert (b["attempted"], b["hard"], b["suppressed"]) == (sent, bounced, skipped)
    assert b["repeat_bounces"] == repeats
    assert skipped  # suppression happened,
    assert not_sent_rows  # whole messages too
    assert (m["suppressed"], m["not_sent"], m["lost"]) == (not_sent_rows, 0, 0)
    assert m["attempted"] + m["suppressed"] == planned


def test_no_5xx_moves_mail_to_the_secondary(drill):
    run_dir, summary = drill
    rows = read_csv(run_dir / "attempts.csv")
    assert {r["server"] for r in rows} == {"primary", ""}  # "": not sent (suppressed)
    assert {r["failover"] for r in rows} == {"0"}
    assert Counter(r["msg_id"] for r in rows).most_common(1)[0][1] == 1  # nothing retried
    secondary = run_dir / "receipts-secondary.csv"
    assert not secondary.exists() or read_csv(secondary) == []
    assert summary["failovers"] == []
    assert set(summary["bounces"]["per_server"]) == {"primary"}
