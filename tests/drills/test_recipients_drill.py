"""Per-recipient accounting and the rolling throughput floor on a real run: Postfix splits
multi-recipient messages by domain; one domain's sink is down all along, so each message
is delivered for some recipients and stranded in the MTA's queue for others. Every figure
is recounted here from the raw journals and the campaign rebuilt from its seed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from loadtest.analysis.rundir import read_scenario
from loadtest.campaign import MessageFactory
from tests.helpers import postfix_run_dir, read_csv

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

ROUTES = {"gmail.test": "gmail-mx", "yahoo.test": "yahoo-mx"}  # the rest: other-mx


@pytest.fixture
def run_dir():
    """Postfix runs as its own user: the run directory must be reachable by it."""
    yield from postfix_run_dir("maildrill-rcpt-")


def test_a_message_delivered_for_some_domains_and_stranded_for_another(run_dir):
    # 60 messages of 2-3 recipients at 10 msgs/s for 6 s (one constant stage); the primary
    # MTA takes them all; yahoo-mx refuses connections from the start to beyond the end.
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "postfix-pair", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=6", "--set", "campaign.schedule.0.rate=10",
         "--set", "campaign.streams=[{name: promotional, recipients_min: 2, recipients_max: 3}]",
         "--set", "faults.0.target=yahoo-mx", "--set", "faults.0.kind=down",
         "--set", "faults.0.at=0", "--set", "faults.0.duration=60",
         "--set", "campaign.drain_s=1",
         "--set", "slo=[lost == 0, recipients_lost == 0, recipients_stranded == 0, "
                  "min_throughput >= 5, mean_throughput >= 5]"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # recipients_stranded fails
    summary = json.loads((run_dir / "summary.json").read_text())
    run_id = summary["run_id"]
    attempts = read_csv(run_dir / "attempts.csv")
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    assert len(accepted) == 60

    # The plan: each message's recipients, rebuilt from the seed.
    scenario = read_scenario(run_dir)
    assert scenario is not None
    factory = MessageFactory(scenario.streams(), run_id, scenario.campaign.seed)
    plan = {(m := factory.build(i)).msg_id: m.recipients for i in range(60)}
    for a in attempts:
        if a["outcome"] == "accepted":
            assert (int(a["recipients"]), int(a["recipients_refused"])) == (
                len(plan[a["msg_id"]]), 0
            )  # fmt: skip

    def domain(address: str) -> str:
        return address.rpartition("@")[2]

    yahoo = {m: {r for r in rs if domain(r) == "yahoo.test"} for m, rs in plan.items()}
    assert max(len(rs) for rs in plan.values()) > 1

    # The journals, recounted: each copy went to its domain's sink; every accepted
    # recipient is either named in a receipt once or still in the MTA's queue file; every
    # Yahoo recipient is in the queue (its sink refused connections all along).
    copies: dict[str, list[str]] = defaultdict(list)
    for sink in ("gmail-mx", "yahoo-mx", "other-mx"):
        path = run_dir / f"receipts-{sink}.csv"
        for r in read_csv(path) if path.exists() else []:
            for address in r["rcpts"].split():
                assert ROUTES.get(domain(address), "other-mx") == sink, r
                copies[r["msg_id"]].append(address)
    queued: dict[str, set[str]] = defaultdict(set)
    for r in read_csv(run_dir / "mta-queue-primary.csv"):
        queued[r["msg_id"]] |= set(r["rcpts"].split())
    for m in accepted:
        assert sorted([*copies.get(m, []), *queued.get(m, set())]) == sorted(plan[m]), m
        assert yahoo[m] <= queued.get(m, set()), m
    delivered = {m: set(copies.get(m, [])) for m in accepted}
    split = [m for m in accepted if delivered[m] and queued.get(m)]
    assert split  # messages with a part on each side: the case per-message counts miss

    recipients = summary["recipients"]
    assert recipients == {
        "addressed": sum(len(plan[m]) for m in plan),
        "accepted": sum(len(plan[m]) for m in accepted),
        "delivered": sum(len(delivered[m]) for m in accepted),
        "lost": 0,
        "duplicated": 0,
        "stranded": sum(len(queued.get(m, set())) for m in accepted),
        "unverified": 0,
        # The Yahoo sink refuses connections, not messages: no 5xx names a message.
        "refused_downstream": sum(
            1
            for sink in ("gmail-mx", "yahoo-mx", "other-mx")
            if (run_dir / f"refusals-{sink}.csv").exists()
            for r in read_csv(run_dir / f"refusals-{sink}.csv")
            if r["msg_id"] and r["code"].startswith("5")
        ),
    }
    assert recipients["stranded"] >= sum(len(yahoo[m]) for m in accepted) > 0
    # Per message, a split message counts as received: only those with nothing delivered
    # are stranded.
    messages = summary["messages"]
    assert messages["stranded"] == sum(1 for m in accepted if not delivered[m])
    assert messages["received_unique"] == sum(1 for m in accepted if delivered[m])
    assert messages["lost"] == 0

    # The floor: the fewest accepted ends in any [t, t + 5) inside the 6 s stage, counted
    # over window starts on a 1 ms grid and just after each end (the brute force).
    t0 = summary["started_at"]
    ends = np.array([float(a["end"]) for a in attempts if a["outcome"] == "accepted"])
    # A window starting just after an end e holds (e, e + 5]: counted so, since e + 1e-7
    # is e itself in floating point at epoch magnitudes (its spacing there is 2.4e-7).
    on_grid = (
        np.count_nonzero((ends >= t) & (ends < t + 5)) for t in t0 + np.arange(0, 1.0005, 0.001)
    )
    after = (
        np.count_nonzero((ends > e) & (ends <= e + 5)) for e in ends[(ends >= t0) & (ends < t0 + 1)]
    )
    fewest = min(*on_grid, *after)
    throughput = summary["throughput"]
    assert throughput["min_rolling_msgs_per_s"] == pytest.approx(fewest / 5)

    checks = {c["name"]: c for c in summary["slo"]["checks"]}
    assert checks["recipients_stranded"]["value"] == recipients["stranded"] > 0
    assert not checks["recipients_stranded"]["passed"]
    assert checks["recipients_lost"]["passed"]
    assert checks["min_throughput"]["value"] == throughput["min_rolling_msgs_per_s"]
    assert checks["mean_throughput"]["value"] == throughput["mean_msgs_per_s"]
    assert "recipients: addressed" in done.stdout
