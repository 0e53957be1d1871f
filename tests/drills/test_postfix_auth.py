"""The bundled postfix-auth drills end to end: real Postfix instances, the primary signing
with a real OpenDKIM, a Gmail-like sink checking SPF, DKIM, DMARC and PTR against the
run's DNS server. Cut to a few seconds (the primary stopped from 2 s to 4 s), each is
recounted from the sinks' receipts and refusals journals per delivering address, not
from the analysis: postfix-auth fails (the secondary's mail refused with 550 5.7.26, the
refusals journaling the checks that failed, which the report names), postfix-auth-aligned
passes (the secondary signs with the same key and is in SPF)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from tests.helpers import postfix_run_dir, postfix_running, read_csv

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

SHORT = ("campaign.schedule.0.duration_s=5", "campaign.schedule.0.rate=10", "faults.0.at=2",
         "faults.0.duration=2", "campaign.drain_s=5")  # fmt: skip
PRIMARY, SECONDARY = "127.0.0.11", "127.0.0.12"
HELO = {PRIMARY: "mx1.shop.test", SECONDARY: "mx2.shop.test"}
CHECKS = ("spf", "dkim", "dmarc", "ptr")


@pytest.fixture
def run_dir():
    yield from postfix_run_dir("maildrill-postfix-auth-")


def drill(scenario: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "loadtest.cli", "run", scenario, "--out", str(run_dir)]
    for s in SHORT:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def nothing_left(run_dir: Path) -> bool:
    """No Postfix (as `postfix status` says) or OpenDKIM (its command line names the run)
    of this run still running."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return postfix_running(run_dir) == [] and str(run_dir) not in ps


def accepted_by(run_dir: Path) -> dict[str, set[str]]:
    by: dict[str, set[str]] = defaultdict(set)
    for a in read_csv(run_dir / "attempts.csv"):
        if a["outcome"] == "accepted":
            by[a["server"]].add(a["msg_id"])
    return by


def by_peer(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        grouped[r["peer"]].append(r)
    return grouped


def published_key(run_dir: Path) -> str:
    """The DKIM record the run's zone served, read from the zone file with dnspython."""
    zone = dns.zone.from_file(str(run_dir / "dns" / "shop.test.zone"), origin="shop.test.",
                              relativize=False)  # fmt: skip
    rdataset = zone.find_rdataset("s1._domainkey.shop.test.", dns.rdatatype.TXT)
    (record,) = rdataset
    return b"".join(record.strings).decode()


def check_the_run_key(run_dir: Path) -> None:
    """The zone published the key the instances signed with; its private half is gone."""
    signed_with = (run_dir / "dkim" / "s1._domainkey.shop.test.txt").read_text().strip()
    assert published_key(run_dir) == signed_with
    assert signed_with.startswith("v=DKIM1; k=rsa; p=MII")
    assert list((run_dir / "dkim").glob("*.private")) == []


def check_path(summary: dict, server: str, peer: str, delivered: list[dict[str, str]],
               refused: list[dict[str, str]]) -> None:  # fmt: skip
    """The summary's path server > gmail-mx @ peer against the journals' rows for it: the
    verdict counts over the receipts and the refusals alike (both journal them)."""
    path = summary["auth"]["paths"][f"{server}>gmail-mx@{peer}"]
    clean = [r for r in delivered if all(r[c] == "pass" for c in ("spf", "dkim", "dmarc"))]
    assert path["delivered"] == len(delivered)
    assert path["clean"] == len(clean)
    assert path["refused"] == len(refused)
    assert path["with_verdicts"] == len(delivered) + len(refused)
    for check in CHECKS:
        counts: dict[str, int] = defaultdict(int)
        for r in delivered + refused:
            counts[r[check]] += 1
        assert path[check] == dict(counts), check
        passing = counts["pass"] / (len(delivered) + len(refused))
        assert path[f"{check}_pass_share"] == pytest.approx(passing, abs=1e-6), check
    assert path["refused_by"] == dict(refused_checks(refused)[0])
    assert path["refused_verdicts"] == refused_checks(refused)[1]


def refused_checks(
    refused: list[dict[str, str]],
) -> tuple[dict[str, int], dict[str, dict[str, dict[str, int]]]]:
    """The refusals by reply, and per reply the verdicts other than pass, per check."""
    codes: dict[str, int] = defaultdict(int)
    why: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for r in refused:
        reply = f"{r['code']} {r['enhanced']}"
        codes[reply] += 1
        for check in CHECKS:
            if r[check] != "pass":
                tally = why[reply].setdefault(check, {})
                tally[r[check]] = tally.get(r[check], 0) + 1
    return dict(codes), dict(why)


def test_the_secondary_that_neither_signs_nor_is_in_spf_gets_refused(run_dir):
    done = drill("postfix-auth", run_dir)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "FAIL  auth_refused == 0" in out
    assert nothing_left(run_dir)
    check_the_run_key(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    accepted = accepted_by(run_dir)
    assert accepted["primary"], "the primary took mail before its stop"
    assert accepted["secondary"], "the secondary took mail during the stop"
    receipts = by_peer([r for r in read_csv(run_dir / "receipts-gmail-mx.csv")])
    refusals = by_peer(read_csv(run_dir / "refusals-gmail-mx.csv"))
    # Each instance delivered from its own address: the primary's, signed, in SPF and
    # with its PTR, all delivered and clean; the secondary's, all refused as Gmail does.
    assert set(receipts) == {PRIMARY}
    assert set(refusals) == {SECONDARY}
    for r in receipts[PRIMARY]:
        assert r["helo"] == HELO[PRIMARY]
        assert (r["spf"], r["dkim"], r["dkim_domain"], r["dmarc"], r["ptr"]) == (
            "pass", "pass", "shop.test", "pass", "pass"
        )  # fmt: skip
    assert {r["msg_id"] for r in receipts[PRIMARY]} == accepted["primary"]
    assert {(r["code"], r["enhanced"]) for r in refusals[SECONDARY]} == {("550", "5.7.26")}
    # Each refusal journals why: neither SPF nor DKIM passes, so DMARC fails (p=reject).
    for r in refusals[SECONDARY]:
        assert r["helo"] == HELO[SECONDARY]
        assert "pass" not in (r["spf"], r["dkim"]), r
        assert (r["dmarc"], r["dmarc_policy"]) == ("fail", "reject"), r
    refused_ids = [r["msg_id"] for r in refusals[SECONDARY]]
    assert len(refused_ids) == len(set(refused_ids))  # a 5xx is final: no retry
    assert accepted["secondary"] <= set(refused_ids)
    check_path(summary, "primary", PRIMARY, receipts[PRIMARY], [])
    check_path(summary, "secondary", SECONDARY, [], refusals[SECONDARY])
    # The secondary's refused mail bounced back to its sender: refused downstream, not lost
    # (recounted here: accepted, received by no sink, not queued at the end, and a 5xx
    # refusal names it).
    received = {r["msg_id"] for rows in receipts.values() for r in rows}
    queued = {r["msg_id"] for f in run_dir.glob("mta-queue-*.csv") for r in read_csv(f)}
    fives = {r["msg_id"] for r in refusals[SECONDARY] if r["code"].startswith("5")}
    missing = (accepted["primary"] | accepted["secondary"]) - received - queued
    m = summary["messages"]
    assert m["refused_downstream"] == len(missing & fives) == len(accepted["secondary"])
    assert m["lost"] == len(missing - fives) == 0
    assert summary["auth"]["refused"] == len(refused_ids)
    assert summary["auth"]["clean"] == len(receipts[PRIMARY])
    # The report's path row names the failing checks, as counted here.
    n = len(refused_ids)
    (why,) = refused_checks(refusals[SECONDARY])[1].values()
    named = "; ".join(
        f"{check} " + ", ".join(f"{v} {k}" for v, k in sorted(why[check].items(),
                                                               key=lambda vk: (-vk[1], vk[0])))
        for check in CHECKS if check in why
    )  # fmt: skip
    assert {"spf", "dkim", "dmarc"} <= set(why)
    report = (run_dir / "report.md").read_text()
    assert f"refused 550 5.7.26 {n}: {named}" in report


def test_the_aligned_secondary_keeps_the_mail_authenticated(run_dir):
    done = drill("postfix-auth-aligned", run_dir)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "SLOs PASSED" in out
    assert nothing_left(run_dir)
    check_the_run_key(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    accepted = accepted_by(run_dir)
    receipts = by_peer(read_csv(run_dir / "receipts-gmail-mx.csv"))
    assert read_csv(run_dir / "refusals-gmail-mx.csv") == []
    assert set(receipts) == {PRIMARY, SECONDARY}
    for peer, server in ((PRIMARY, "primary"), (SECONDARY, "secondary")):
        for r in receipts[peer]:
            assert r["helo"] == HELO[peer]
            assert (r["spf"], r["dkim"], r["dkim_domain"], r["dmarc"], r["ptr"]) == (
                "pass", "pass", "shop.test", "pass", "pass"
            ), r  # fmt: skip
        assert {r["msg_id"] for r in receipts[peer]} == accepted[server]
        check_path(summary, server, peer, receipts[peer], [])
    assert summary["auth"]["clean"] == sum(len(rows) for rows in receipts.values())
    assert summary["auth"]["refused"] == 0


def test_an_opendkim_that_cannot_be_set_up_fails_the_run_in_one_line(tmp_path):
    """A run directory whose path holds a space would split OpenDKIM's config lines: the
    run stops at set-up (exit 2) with one line naming the instance, before its Postfix
    starts; the DNS server and sinks already running are stopped, and the key made for
    the run is gone."""
    base = Path("/var/tmp") / f"{tmp_path.name} with space"
    base.mkdir(mode=0o755)
    run_dir = base / "run"
    try:
        done = drill("postfix-auth", run_dir)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        (line,) = [x for x in done.stderr.splitlines() if "OpenDKIM" in x]
        assert line == (
            f"maildrill: OpenDKIM for postfix primary: '{run_dir}/postfix-primary/opendkim' "
            "holds a space, line break or control character"
        )
        assert nothing_left(run_dir)
        assert not (run_dir / "postfix-primary" / "queue").exists()  # never built
        assert list((run_dir / "dkim").glob("*.private")) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
