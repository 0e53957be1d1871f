"""The bundled `dns-switch` drill, cut to 4 s with a 1 s TTL (the record moved at 1.2 s
and back at 2.7 s): the follow times summary.json's `dns` gives for the change and the switch
back are recounted from the journals (attempts.csv's addr, start, worker, dns_at;
faults-dns.csv's start and stop rows) and agree, and each is within one TTL and one cache
refresh (the sender's next send once its answer expired)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.drills.run_helpers import maildrill
from tests.helpers import LATE_S, port_free_on, read_csv

pytestmark = pytest.mark.slow

OLD, NEW, NAME, TTL = "127.0.0.11", "127.0.0.12", "smtp.shop.test", 1


def recount(attempts: list[dict[str, str]], at: float, until: float, new: str) -> dict[str, Any]:
    """The figures of one change, by hand: per sender (worker), its first attempt at the
    new address after its last one at an old address."""
    after = [a for a in attempts if a["dns_name"] == NAME and at <= float(a["start"]) < until]
    stale = [a for a in after if a["addr"] != new]
    followed: list[float] = []
    for worker in {a["worker"] for a in after}:
        mine = [a for a in after if a["worker"] == worker]
        last_old = max((float(a["start"]) for a in mine if a["addr"] != new), default=-math.inf)
        moved = [float(a["start"]) for a in mine if a["addr"] == new]
        followed.append(min(t for t in moved if t > last_old))
    return {
        "first_follow_s": round(min(float(a["start"]) for a in after if a["addr"] == new) - at, 3),
        "last_follow_s": round(max(followed) - at, 3),
        "stale_attempts": len(stale),
        "senders": len(followed),
    }


def test_dns_switch_followed_within_one_ttl_recounted_from_the_journals(tmp_path: Path):
    port = port_free_on(OLD, NEW)
    run_dir = tmp_path / "run"
    done = maildrill(
        "run", "dns-switch", "--out", str(run_dir),
        *(f"--set=servers.{i}.port={port}" for i in range(3)),
        "--set=campaign.schedule=[{duration_s: 4, rate: 20}]", "--set=campaign.drain_s=1",
        "--set=users=2",
        f"--set=dns={{zones: {{shop.test: {{smtp: {{A: {OLD}, ttl: {TTL}}}}}}}}}",
        "--set=faults=[{at: 1.2, target: dns, kind: records, duration: 1.5,"
        f" records: {{{NAME}: {{A: {NEW}, ttl: {TTL}}}}}}}]",
        f"--set=slo=[lost == 0, duplicates == 0, dns_follow_s <= {TTL + 1}, dns_deferred == 0]",
        timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = read_csv(run_dir / "attempts.csv")
    faults = read_csv(run_dir / "faults-dns.csv")
    changed = next(float(r["time"]) for r in faults if r["state"] == "start")
    back = next(float(r["time"]) for r in faults if r["state"] == "stop")
    summary = json.loads((run_dir / "summary.json").read_text())["dns"]
    change, switch_back = summary["changes"]
    edges = ((change, changed, back, NEW), (switch_back, back, math.inf, OLD))
    for figures, at, until, new in edges:
        expected = recount(attempts, at, until, new)
        assert {k: figures[k] for k in expected} == expected, figures
        # within one TTL and the next send after the cached answer expired
        assert 0 <= figures["first_follow_s"] <= figures["last_follow_s"] <= TTL + LATE_S
        # what was still sent to the old address came from an answer looked up before the
        # change, kept no longer than its TTL
        for a in attempts:
            if at <= float(a["start"]) < until and a["addr"] != new:
                assert float(a["dns_at"]) < at <= float(a["dns_at"]) + TTL
    assert summary["follow_s"] == max(change["last_follow_s"], switch_back["last_follow_s"])
    assert summary["stale_attempts"] == change["stale_attempts"] + switch_back["stale_attempts"]
    assert (summary["deferred"], len(attempts)) == (0, 80)
    assert {a["addr"] for a in attempts} == {OLD, NEW}


def test_mx_backup_follows_mx_order_and_its_sinks_fault_is_measured_at_its_address(
    tmp_path: Path,
):
    """The bundled `mx-backup`, cut to 4 s (the primary's sink down from 1 s to 2.5 s): the
    senders send to MX 10 (the primary's address), to MX 20 while it is down, and back;
    every accepted message is in the receipts of the sink at the address it used, and the
    primary's fault is one window measured against the attempts at its address."""
    port = port_free_on(OLD, NEW)
    run_dir = tmp_path / "run"
    done = maildrill(
        "run", "mx-backup", "--out", str(run_dir),
        *(f"--set=servers.{i}.port={port}" for i in range(3)),
        "--set=campaign.schedule=[{duration_s: 4, rate: 20}]", "--set=campaign.drain_s=1",
        "--set=users=2", "--set=routing.circuit.cooldown_s=0.5",
        "--set=faults=[{at: 1, target: primary, kind: down, duration: 1.5}]",
        timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = read_csv(run_dir / "attempts.csv")
    faults = read_csv(run_dir / "faults-primary.csv")
    onset = next(float(r["time"]) for r in faults if r["state"] == "start")
    clear = next(float(r["time"]) for r in faults if r["state"] == "stop")
    at = {"mx1.shop.test": OLD, "mx2.shop.test": NEW}
    accepted: dict[str, set[str]] = {OLD: set(), NEW: set()}
    for a in attempts:
        assert a["addr"] == at[a["server"]], a  # each MX host at its own address
        if a["outcome"] == "accepted":
            accepted[a["addr"]].add(a["msg_id"])
        if float(a["end"]) < onset:  # MX order: the preferred host while it answers
            assert a["server"] == "mx1.shop.test"
        elif onset + LATE_S < float(a["start"]) < clear and a["addr"] == OLD:
            assert a["outcome"] != "accepted", a  # down: only the breaker's tries, refused
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-primary.csv")} == accepted[OLD]
    assert {r["msg_id"] for r in read_csv(run_dir / "receipts-secondary.csv")} == accepted[NEW]
    assert len(accepted[OLD] | accepted[NEW]) == 80
    # begun once the sink had surely cut its open sessions, before it listened again
    during = [a for a in attempts if onset + LATE_S < float(a["start"]) < clear]
    assert {a["addr"] for a in during if a["outcome"] == "accepted"} == {NEW}  # MX 20 took it
    first_at_old_again = min(
        float(a["end"]) for a in attempts
        if a["addr"] == OLD and a["outcome"] == "accepted" and float(a["start"]) >= clear
    )  # fmt: skip
    first_at_new = min(
        float(a["end"]) for a in attempts
        if a["addr"] == NEW and a["outcome"] == "accepted" and float(a["end"]) >= onset
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    (window,) = summary["failovers"]  # the sink's, no second one inferred for mx1.shop.test
    assert (window["target"], window["kind"]) == ("primary", "down")
    assert window["failover_s"] == pytest.approx(first_at_new - onset, abs=0.001)
    assert window["failback_s"] == pytest.approx(first_at_old_again - clear, abs=0.001)
    assert window["detection_s"] is not None
    assert (summary["messages"]["accepted"], summary["messages"]["lost"]) == (80, 0)
