"""summary.json's `auth` from real verifying sinks, recounted from their journals.

`maildrill sinks` serves the run's zone and three sinks: `gmail` verifies and enforces as
Gmail, `inbox` verifies and only journals, `spare` takes a `down` fault from 2 s to 5 s
after they listen. Two senders deliver to both verifying sinks, before, during and after
that fault: 127.0.0.11 (mx1.shop.test, in SPF, with a PTR, DKIM-signed for shop.test) and
127.0.0.12 (mx2.shop.test, none of those). Every figure of `auth` is then counted again
here from receipts-*.csv, refusals-*.csv and faults-spare.csv with csv.DictReader, by
rules written out below rather than by the analysis's code: the verdict tallies and pass
shares from the receipts' and the enforcement refusals' verdict columns alike.
"""

from __future__ import annotations

import csv
import smtplib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.analysis import summary as summary_mod
from loadtest.analysis.summary_model import AuthCounts
from tests.helpers import maildrill_sinks, wait_until
from tests.integration.test_verify_run_dns import ALIGNED, STRANGER, key_pair, message, send

pytestmark = pytest.mark.slow

FAULT_AT, FAULT_FOR = 2.0, 3.0  # seconds after the sinks listen
HELO = {ALIGNED: "mx1.shop.test", STRANGER: "mx2.shop.test"}
CHECKS = ("spf", "dkim", "dmarc", "ptr")


def scenario(dkim_record: str) -> dict[str, Any]:
    return {
        "name": "auth-summary",
        "servers": [
            {"name": "gmail", "local": True, "sink": {"verify": {"enforce": "gmail"}}},
            {"name": "inbox", "local": True, "sink": {"verify": {}}},
            {"name": "spare", "local": True},
        ],
        "campaign": {"schedule": [{"duration_s": 60, "rate": 1}]},
        "faults": [{"at": FAULT_AT, "target": "spare", "kind": "down", "duration": FAULT_FOR}],
        "slo": ["dmarc_fail == 0", "dkim_pass_share >= 0.99", "auth_refused == 0"],
        "dns": {
            "zones": {
                "shop.test": {
                    "MX": "10 mx1.shop.test",
                    "TXT": f"v=spf1 ip4:{ALIGNED} -all",
                    "mx1": {"A": ALIGNED},
                    "s1._domainkey": {"TXT": dkim_record},
                    "_dmarc": {"TXT": "v=DMARC1; p=reject"},
                },
                "127.in-addr.arpa": {ALIGNED: {"PTR": "mx1.shop.test"}},
            }
        },
    }


def rows(out: Path, pattern: str) -> list[dict[str, str]]:
    found = []
    for path in sorted(out.glob(pattern)):
        with path.open(newline="", encoding="utf-8") as f:
            found += list(csv.DictReader(f))
    return found


def fault_rows(out: Path) -> list[dict[str, str]]:
    path = out / "faults-spare.csv"
    return rows(out, "faults-spare.csv") if path.exists() else []


def test_auth_figures_recounted_from_the_journals(tmp_path: Path) -> None:
    private, public = key_pair()
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(scenario(public), sort_keys=False))
    out = tmp_path / "out"
    with maildrill_sinks(path, out) as run:
        ports = {s["name"]: s["port"] for s in run.ready["sinks"]}
        sent = 0

        def batch(phase: str) -> None:
            nonlocal sent
            for sink in ("gmail", "inbox"):
                for source, key in ((ALIGNED, private), (STRANGER, None)):
                    sent += 1
                    msg_id = f"{phase}-{sink}-{source}"
                    send(ports[sink], source, HELO[source], message(msg_id, key))

        batch("before")
        assert wait_until(lambda: len(fault_rows(out)) >= 1, timeout=FAULT_AT + 20)
        batch("during")
        assert wait_until(lambda: len(fault_rows(out)) >= 2, timeout=FAULT_FOR + 20)
        batch("after")
        # A refusal that is not enforcement, in the session right after one that is: its
        # row carries no verdicts (the refused message's are journaled once).
        with smtplib.SMTP("127.0.0.1", ports["gmail"], timeout=20,
                          source_address=(STRANGER, 0)) as client:  # fmt: skip
            client.ehlo(HELO[STRANGER])
            client.mail("news@shop.test")
            client.rcpt("a@gmail.test")
            assert client.data(message("extra", None))[0] == 550
            client.mail("news@shop.test")
            assert client.docmd("DATA")[0] == 503  # no RCPT
        err = run.stop()
    assert run.proc.returncode == 0, err

    summary = summary_mod.write(out)
    auth = summary.auth
    assert auth is not None

    # The journals, read here.
    receipts = [r for r in rows(out, "receipts-*.csv") if r["spf"]]
    refusals = [
        r for r in rows(out, "refusals-*.csv")
        if r["stage"] == "dot" and r["enhanced"][:4] in ("5.7.", "4.7.")
    ]  # fmt: skip
    assert len(receipts) + len(refusals) == sent + 1 == 13  # the extra session's too
    # gmail's refusals journal why: the stranger's verdicts and EHLO name.
    assert [
        (r["peer"], r["helo"], r["spf"], r["dkim"], r["dmarc"], r["dmarc_policy"]) for r in refusals
    ] == [(STRANGER, "mx2.shop.test", "fail", "none", "fail", "reject")] * 4
    others = [r for r in rows(out, "refusals-*.csv") if r not in refusals]
    assert [r["code"] for r in others if r["sink"] == "gmail"] == ["503"]  # the extra DATA
    assert all(r["spf"] == r["dkim"] == r["auth_detail"] == "" for r in others)
    faults = {r["state"]: float(r["time"]) for r in fault_rows(out)}
    t0 = summary.started_at

    def expect(delivered: list[dict[str, str]], refused: list[dict[str, str]]) -> AuthCounts:
        """AuthCounts as docs/metrics.md defines them, counted from the rows."""
        n, m = len(delivered), len(refused)
        judged = delivered + [r for r in refused if r["spf"]]
        passing = {c: sum(r[c] == "pass" for r in judged) for c in CHECKS}
        clean = sum(r["dmarc"] == "pass" and r["ptr"] == "pass" for r in delivered)
        replies = Counter(f"{r['code']} {r['enhanced']}" for r in refused)
        why = {
            reply: {
                c: dict(Counter(r[c] for r in refused
                                if f"{r['code']} {r['enhanced']}" == reply and r[c] != "pass"))
                for c in CHECKS
            }
            for reply in replies
        }  # fmt: skip
        return AuthCounts(
            checked=n + m,
            delivered=n,
            clean=clean,
            dmarc_fail=sum(r["dmarc"] == "fail" for r in delivered),
            unauthenticated=sum(r["spf"] != "pass" and r["dkim"] != "pass" for r in delivered),
            refused=m,
            refused_by=dict(replies),
            **{c: dict(Counter(r[c] for r in judged)) for c in CHECKS},
            **{f"{c}_pass_share": round(passing[c] / len(judged), 6) if judged else None
               for c in CHECKS},
            clean_share=round(clean / (n + m), 6) if n + m else None,
            with_verdicts=len(judged),
            refused_verdicts={
                reply: {c: t for c, t in checks.items() if t} for reply, checks in why.items()
            },
        )  # fmt: skip

    def same(got: AuthCounts, want: AuthCounts) -> None:
        fields = list(AuthCounts.model_fields)
        assert {f: getattr(got, f) for f in fields} == {f: getattr(want, f) for f in fields}

    same(auth, expect(receipts, refusals))
    # What the senders did, in the figures: the aligned one passes all four checks, the
    # other is refused by gmail with 5.7.26 (four times, the extra session's too) and
    # delivered to inbox failing DMARC.
    assert (auth.delivered, auth.refused, auth.clean, auth.dmarc_fail) == (9, 4, 6, 3)
    assert auth.refused_by == {"550 5.7.26": 4}
    assert auth.refused_verdicts == {
        "550 5.7.26": {"spf": {"fail": 4}, "dkim": {"none": 4}, "dmarc": {"fail": 4},
                       "ptr": {"none": 4}}
    }  # fmt: skip
    assert auth.dkim == {"none": 7, "pass": 6}  # the refused stranger's four too

    for sink in ("gmail", "inbox"):
        same(auth.sinks[sink], expect(
            [r for r in receipts if r["sink"] == sink], [r for r in refusals if r["sink"] == sink]
        ))  # fmt: skip
    assert (auth.sinks["gmail"].enforce, auth.sinks["inbox"].enforce) == ("gmail", "none")

    # Per path: no sender's journal, so the server is unknown ("-"); sink and address.
    assert list(auth.servers) == ["-"]
    same(auth.servers["-"], expect(receipts, refusals))
    paths = {(r["sink"], r["peer"]) for r in receipts + refusals}
    assert set(auth.paths) == {f"->{sink}@{peer}" for sink, peer in paths}
    for sink, peer in sorted(paths):
        mine = [r for r in receipts if (r["sink"], r["peer"]) == (sink, peer)]
        theirs = [r for r in refusals if (r["sink"], r["peer"]) == (sink, peer)]
        p = auth.paths[f"->{sink}@{peer}"]
        same(p, expect(mine, theirs))
        assert p.helo == sorted({r["helo"] for r in mine + theirs})
    stranger = auth.paths[f"->inbox@{STRANGER}"]
    assert (stranger.dmarc_fail, stranger.unauthenticated, stranger.spf) == (3, 3, {"fail": 3})
    assert stranger.helo == ["mx2.shop.test"]

    # Around the fault, by the time each row was journaled.
    (fault,) = auth.faults
    assert (fault.target, fault.kind) == ("spare", "down")
    assert fault.onset_s == pytest.approx(faults["start"] - t0, abs=1e-6)
    assert fault.cleared_s == pytest.approx(faults["stop"] - t0, abs=1e-6)

    def phase(rows: list[dict[str, str]], name: str) -> list[dict[str, str]]:
        start, stop = faults["start"], faults["stop"]
        at = {"before": lambda t: t < start, "during": lambda t: start <= t < stop,
              "after": lambda t: t >= stop}[name]  # fmt: skip
        return [r for r in rows if at(float(r["time"]))]

    for name in ("before", "during", "after"):
        same(getattr(fault, name), expect(phase(receipts, name), phase(refusals, name)))
        for key, p in auth.paths.items():
            sink, peer = key.removeprefix("->").split("@")
            mine = [r for r in receipts if (r["sink"], r["peer"]) == (sink, peer)]
            theirs = [r for r in refusals if (r["sink"], r["peer"]) == (sink, peer)]
            same(getattr(p.faults[0], name), expect(phase(mine, name), phase(theirs, name)))
    # Each batch was sent after the last one's wait: "after" is certain, and the others
    # had seconds to spare.
    assert fault.after.checked == 5
    assert fault.before.checked + fault.during.checked == 8

    # The SLOs on them, and the report's section naming the failing path.
    checks = {c.name: (c.value, c.passed) for c in summary.slo.checks}
    assert checks["dmarc_fail"] == (3, False)
    assert checks["dkim_pass_share"] == (pytest.approx(6 / 13, abs=1e-6), False)
    assert checks["auth_refused"] == (4, False)
    report = (out / "report.md").read_text()
    assert "## Authentication on each path" in report
    assert f"{STRANGER} (mx2.shop.test)" in report
    assert "refused 550 5.7.26 4: spf fail 4; dkim none 4; dmarc fail 4; ptr none 4" in report
