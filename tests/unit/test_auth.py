"""summary.json's `auth` on hand-made journals whose answers are written out here: every
verdict the receipts' columns can hold, refusals that are and are not enforcement (with
the verdicts that decided them, and without, as older journals have them), the paths and
the split around a fault; old journals without the columns read as not verified; the SLO
metrics; and the enforcement codes against the sink's own replies."""

from __future__ import annotations

import csv
import dataclasses
import itertools

import pandas as pd
import pytest

from loadtest.analysis import auth, compare, render_md, slo, tally, view
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import SLO_METRICS, Summary
from maildrill.records import ReceiptRecord, RefusalRecord
from sinks.authcheck.enforce import REFUSAL_CODES, refusal
from sinks.authcheck.verdicts import AuthVerdicts, Verdict
from tests import runs

T0 = 1_000.0
MX1, MX2 = "127.0.0.11", "127.0.0.12"

# (msg, sink, seconds from t0, peer, helo, spf, dkim, dmarc, ptr)
RECEIPTS = [
    ("m1", "inbox", 1.0, MX1, "mx1.shop.test", "pass", "pass", "pass", "pass"),
    ("m2", "inbox", 2.0, MX1, "mx1.shop.test", "pass", "none", "pass", "pass"),
    ("m3", "inbox", 5.0, MX2, "mx2.shop.test", "softfail", "fail", "fail", "fail"),
    ("m4", "inbox", 6.0, MX2, "mx2.shop.test", "neutral", "none", "none", "none"),
    ("m5", "inbox", 7.0, MX2, "mx2.shop.test", "temperror", "temperror", "temperror", "temperror"),
    ("m6", "inbox", 12.0, MX1, "mx1.shop.test", "permerror", "pass", "pass", "pass"),
    ("m7", "inbox", 3.0, MX1, "mx1.shop.test", "", "", "", ""),  # not checked
    ("m8", "inbox", 8.0, MX2, "mx2.shop.test", "fail", "none", "fail", "pass"),
    ("m9", "plain", 3.0, MX1, "mx1.shop.test", "", "", "", ""),  # a sink without verify:
]
# (msg, sink, seconds, peer, stage, code, enhanced, spf, dkim, dmarc, ptr): the verdicts
# as a sink journals them on its refusals for enforce: ("" on any other refusal)
REFUSALS = [
    ("m10", "gmail", 5.5, MX2, "dot", 550, "5.7.26", "fail", "none", "fail", "pass"),
    # enforcement, temporary
    ("m11", "gmail", 6.5, MX2, "dot", 421, "4.7.26", "temperror", "none", "temperror", "pass"),
    # enforcement (PTR), after the fault
    ("m12", "gmail", 11.0, MX2, "dot", 550, "5.7.25", "pass", "pass", "pass", "none"),
    ("m13", "gmail", 6.0, MX2, "dot", 550, "5.7.1", "", "", "", ""),  # a reject fault
    ("m14", "gmail", 6.0, MX2, "rcpt", 550, "5.7.26", "", "", "", ""),  # not at the dot
    ("m15", "plain", 6.0, MX2, "dot", 550, "5.7.26", "", "", "", ""),  # does not verify
    # enforce none: no provider's code, so not counted, verdicts or not
    ("m16", "inbox", 6.0, MX2, "dot", 550, "5.7.9", "fail", "none", "fail", "pass"),
]
# Who took each message from the sender (its 250), else its last attempt's server.
HANDED = {"m1": "primary", "m2": "primary", "m6": "primary", "m7": "primary"}
HANDED |= {m: "secondary" for m in ("m3", "m4", "m5", "m8", "m10", "m11", "m12")}
WINDOW = FaultWindow("primary", "mta_stop", "stop-1", T0 + 4.0, T0 + 10.0)
VERIFYING = {"inbox": "none", "gmail": "gmail"}


def receipts(rows=RECEIPTS) -> pd.DataFrame:
    columns = ["msg_id", "sink", "time", "peer", "helo", "spf", "dkim", "dmarc", "ptr"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] += T0
    return frame


def refusals(verdicts: bool = True) -> pd.DataFrame:
    """The refusals; without `verdicts` as a journal older than the helo and verdict
    columns reads (no such columns)."""
    columns = ["msg_id", "sink", "time", "peer", "stage", "code", "enhanced", *auth.CHECKS]
    frame = pd.DataFrame(REFUSALS, columns=columns)
    frame["time"] += T0
    frame["code"] = frame["code"].astype("float64")  # as the journal reader gives it
    if not verdicts:
        return frame.drop(columns=list(auth.CHECKS))
    frame["helo"] = "mx2.shop.test"
    return frame


def attempts() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The attempts and reconcile's per-message frame: m10-m12 were refused by gmail
    itself (an earlier attempt at primary, the last at secondary); the rest accepted."""
    rows = []
    for msg, server in HANDED.items():
        if msg in ("m10", "m11", "m12"):
            rows.append((msg, 1, "primary", T0, "refused"))
            rows.append((msg, 2, server, T0 + 1, "rejected"))
        else:
            rows.append((msg, 1, server, T0, "accepted"))
    frame = pd.DataFrame(rows, columns=["msg_id", "attempt", "server", "start", "outcome"])
    frame["server"] = frame["server"].astype("category")
    took = frame[frame["outcome"] == "accepted"].set_index("msg_id")["server"].astype(object)
    per = pd.DataFrame({"accepted_by": took})
    return frame, per


@pytest.fixture
def summary():
    a, per = attempts()
    result = auth.summarise(receipts(), refusals(), a, per, VERIFYING, [WINDOW], T0)
    assert result is not None
    return result


def test_the_whole_run_counts_each_verdict(summary):
    # Verified receipts: m1-m6 and m8 (m7 has no verdicts, m9 is at a sink that does not
    # verify); enforcement refusals: m10, m11, m12, whose verdicts count with them.
    assert (summary.delivered, summary.refused, summary.checked) == (7, 3, 10)
    assert summary.with_verdicts == 10
    assert summary.spf == {
        "pass": 3, "fail": 2, "temperror": 2, "neutral": 1, "permerror": 1, "softfail": 1
    }  # fmt: skip
    assert summary.dkim == {"none": 5, "pass": 3, "fail": 1, "temperror": 1}
    assert summary.dmarc == {"pass": 4, "fail": 3, "temperror": 2, "none": 1}
    assert summary.ptr == {"pass": 6, "none": 2, "fail": 1, "temperror": 1}
    assert summary.spf_pass_share == pytest.approx(3 / 10)  # m1, m2, m12
    assert summary.dkim_pass_share == pytest.approx(3 / 10)  # m1, m6, m12
    assert summary.dmarc_pass_share == pytest.approx(4 / 10)  # m1, m2, m6, m12
    assert summary.ptr_pass_share == pytest.approx(6 / 10)  # m1, m2, m6, m8, m10, m11
    assert summary.refused_verdicts == {
        "421 4.7.26": {"spf": {"temperror": 1}, "dkim": {"none": 1}, "dmarc": {"temperror": 1}},
        "550 5.7.25": {"ptr": {"none": 1}},
        "550 5.7.26": {"spf": {"fail": 1}, "dkim": {"none": 1}, "dmarc": {"fail": 1}},
    }
    assert summary.clean == 3  # m1, m2, m6: DMARC and PTR pass
    assert summary.clean_share == pytest.approx(3 / 10)
    assert summary.dmarc_fail == 2  # m3, m8
    assert summary.unauthenticated == 4  # m3, m4, m5, m8: neither SPF nor DKIM passes
    assert summary.refused_by == {"421 4.7.26": 1, "550 5.7.25": 1, "550 5.7.26": 1}


def test_per_sink(summary):
    assert list(summary.sinks) == ["gmail", "inbox"]  # plain does not verify
    gmail, inbox = summary.sinks["gmail"], summary.sinks["inbox"]
    assert (gmail.enforce, gmail.delivered, gmail.refused) == ("gmail", 0, 3)
    assert gmail.spf == {"fail": 1, "pass": 1, "temperror": 1}  # its refusals' verdicts
    assert gmail.spf_pass_share == pytest.approx(1 / 3)
    assert gmail.clean_share == 0
    assert (inbox.enforce, inbox.delivered, inbox.refused, inbox.clean) == ("none", 7, 0, 3)


def test_per_server_the_sender_handed_it_to(summary):
    assert list(summary.servers) == ["primary", "secondary"]
    primary, secondary = summary.servers["primary"], summary.servers["secondary"]
    assert (primary.checked, primary.clean, primary.dkim_pass_share) == (3, 3, pytest.approx(2 / 3))
    assert (secondary.delivered, secondary.refused, secondary.clean) == (4, 3, 0)
    assert secondary.refused_by == {"421 4.7.26": 1, "550 5.7.25": 1, "550 5.7.26": 1}


def test_per_path_names_the_server_the_sink_and_the_delivering_address(summary):
    assert list(summary.paths) == [
        f"primary>inbox@{MX1}", f"secondary>gmail@{MX2}", f"secondary>inbox@{MX2}"
    ]  # fmt: skip
    primary = summary.paths[f"primary>inbox@{MX1}"]
    assert (primary.server, primary.sink, primary.peer) == ("primary", "inbox", MX1)
    assert primary.helo == ["mx1.shop.test"]
    assert (primary.delivered, primary.clean, primary.dmarc_fail) == (3, 3, 0)
    assert primary.dkim == {"pass": 2, "none": 1}
    secondary = summary.paths[f"secondary>inbox@{MX2}"]
    assert (secondary.delivered, secondary.clean, secondary.dmarc_fail) == (4, 0, 2)
    assert secondary.unauthenticated == 4
    assert secondary.spf_pass_share == 0
    refused = summary.paths[f"secondary>gmail@{MX2}"]
    assert (refused.delivered, refused.refused, refused.helo) == (0, 3, ["mx2.shop.test"])
    assert refused.dkim == {"none": 2, "pass": 1}


def test_before_during_and_after_the_fault(summary):
    (fault,) = summary.faults
    assert (fault.target, fault.kind, fault.onset_s, fault.cleared_s) == (
        "primary", "mta_stop", 4.0, 10.0
    )  # fmt: skip
    # Before 4 s: m1, m2. From 4 to 10 s: m3, m4, m5, m8 and refusals m10, m11. From 10 s:
    # m6 and refusal m12.
    assert (fault.before.delivered, fault.before.refused, fault.before.clean) == (2, 0, 2)
    assert (fault.during.delivered, fault.during.refused, fault.during.clean) == (4, 2, 0)
    assert fault.during.dmarc == {"fail": 3, "temperror": 2, "none": 1}  # m10, m11 too
    assert (fault.after.delivered, fault.after.refused, fault.after.clean) == (1, 1, 1)
    assert fault.after.refused_by == {"550 5.7.25": 1}
    path = summary.paths[f"secondary>inbox@{MX2}"]
    (around,) = path.faults
    assert (around.before.checked, around.during.delivered, around.after.checked) == (0, 4, 0)


def test_refusals_without_verdicts_count_as_refused_in_no_verdict():
    """Refusals from a journal older than their verdict columns: refused as before, but
    the tallies and pass shares are the deliveries' alone, and the report names the reply
    only."""
    result = auth.summarise(receipts(), refusals(verdicts=False), *attempts(), VERIFYING,
                            [WINDOW], T0)  # fmt: skip
    assert result is not None
    assert (result.delivered, result.refused, result.checked) == (7, 3, 10)
    assert result.with_verdicts == 7
    assert result.refused_verdicts == {}
    assert result.dkim == {"none": 3, "pass": 2, "fail": 1, "temperror": 1}
    assert result.spf_pass_share == pytest.approx(2 / 7)
    assert result.ptr_pass_share == pytest.approx(4 / 7)
    path = result.paths[f"secondary>gmail@{MX2}"]
    assert (path.refused, path.with_verdicts, path.spf_pass_share, path.helo) == (3, 0, None, [])
    assert view.auth_did_not_pass(path) == (
        "refused 421 4.7.26 1; refused 550 5.7.25 1; refused 550 5.7.26 1"
    )


def test_a_fault_never_cleared_runs_to_the_end():
    open_ended = FaultWindow("primary", "down", "", T0 + 4.0, None)
    result = auth.summarise(receipts(), refusals(), *attempts(), VERIFYING, [open_ended], T0)
    assert result is not None
    (fault,) = result.faults
    assert fault.cleared_s is None
    assert (fault.during.delivered, fault.during.refused, fault.after.checked) == (5, 3, 0)


def test_without_the_senders_journal_the_server_is_unknown():
    result = auth.summarise(
        receipts(), refusals(), pd.DataFrame(), pd.DataFrame(), VERIFYING, [], T0
    )
    assert result is not None
    assert list(result.paths) == [f"->gmail@{MX2}", f"->inbox@{MX1}", f"->inbox@{MX2}"]
    assert result.paths[f"->inbox@{MX1}"].server == ""
    assert list(result.servers) == ["-"]
    assert result.servers["-"].checked == 10
    assert result.delivered == 7


def test_no_verifying_sink_no_auth():
    plain = receipts([r for r in RECEIPTS if r[5] == ""])
    assert auth.summarise(plain, refusals(), *attempts(), {}, [], T0) is None


def test_verdicts_without_a_scenario_still_count_and_any_providers_code_is_enforcement():
    result = auth.summarise(receipts(), refusals(), *attempts(), {}, [], T0)
    assert result is not None
    assert list(result.sinks) == ["inbox"]  # known from its verdicts; enforce unknown
    assert result.sinks["inbox"].enforce == ""
    assert result.refused == 1  # m16's 5.7.9 at inbox: a provider's code, at the dot


def test_old_journals_without_the_columns_read_as_not_verified(tmp_path):
    """A run directory whose receipts predate the columns (cut from the header), beside
    a verifying sink's: the old rows are not counted, never as failing."""
    run_dir = runs.drill(tmp_path / "run")
    old = pd.read_csv(run_dir / "receipts-primary.csv", dtype=str, keep_default_na=False)
    new = ("spf", "dkim", "dkim_domain", "dmarc", "dmarc_policy", "ptr", "auth_detail")
    columns = [c for c in old.columns if c not in new]
    old[columns].to_csv(run_dir / "receipts-primary.csv", index=False)
    plain = summary_mod.summarise(RunDir.load(run_dir))
    assert plain.auth is None
    verdicts = dict(spf="pass", dkim="pass", dmarc="fail", dmarc_policy="none", ptr="pass")
    runs.write_csv(
        run_dir / "receipts-inbox.csv",
        ReceiptRecord,
        [ReceiptRecord(time=runs.T0 + 1, sink="inbox", worker=0, session="s", peer=MX1,
                       msg_id="other-1", message_id="", mail_from="", rcpt_count=1, size=1,
                       outcome="accepted", queue_id="q", helo="mx1", **verdicts)],
    )  # fmt: skip
    runs.write_csv(
        run_dir / "refusals-inbox.csv",
        RefusalRecord,
        [RefusalRecord(time=runs.T0 + 2, sink="inbox", worker=0, session="s", peer=MX2,
                       stage="dot", code="550", enhanced="5.7.26", mail_from="",
                       rcpt_count=1, msg_id="other-2")],
    )  # fmt: skip
    # A refusals journal from before its helo and verdict columns.
    refused = pd.read_csv(run_dir / "refusals-inbox.csv", dtype=str, keep_default_na=False)
    refused[[c for c in refused.columns if c not in {*new, "helo"}]].to_csv(
        run_dir / "refusals-inbox.csv", index=False
    )
    mixed = summary_mod.summarise(RunDir.load(run_dir))
    assert mixed.auth is not None
    assert (mixed.auth.delivered, mixed.auth.dmarc_fail, mixed.auth.refused) == (1, 1, 1)
    assert (mixed.auth.with_verdicts, mixed.auth.refused_verdicts) == (1, {})
    assert mixed.auth.dmarc == {"fail": 1}
    assert list(mixed.auth.sinks) == ["inbox"]
    assert list(mixed.auth.paths) == [f"->inbox@{MX1}", f"->inbox@{MX2}"]  # not our msgs
    assert len(mixed.auth.faults) == len(mixed.failovers) == 1


def test_the_slo_metrics_read_auth(summary, tmp_path):
    drill = summary_mod.summarise(RunDir.load(runs.drill(tmp_path / "run")))
    assert drill.auth is None  # no sink verifies there
    none = slo.metric_values(drill)
    auth_metrics = [name for name, m in SLO_METRICS.items() if m.path.startswith("auth.")]
    assert len(auth_metrics) == 8
    assert all(none[name] is None for name in auth_metrics)
    (check,) = slo.check(["dmarc_fail == 0"], none).checks
    assert (check.passed, check.note) == (False, "not measured")

    drill.auth = summary
    values = slo.metric_values(drill)
    assert values["dmarc_fail"] == 2
    assert values["unauthenticated"] == 4
    assert values["auth_refused"] == 3
    assert values["spf_pass_share"] == pytest.approx(3 / 10)
    assert values["dkim_pass_share"] == pytest.approx(3 / 10)
    assert values["dmarc_pass_share"] == pytest.approx(4 / 10)
    assert values["ptr_pass_share"] == pytest.approx(6 / 10)
    assert values["auth_clean_share"] == pytest.approx(0.3)
    verdict = slo.check(["dmarc_fail == 0", "dkim_pass_share >= 0.25"], values)
    assert [c.passed for c in verdict.checks] == [False, True]
    # summary.json keeps it: written and read back, the same values.
    again = Summary.model_validate_json(summary_mod.as_json(drill))
    assert again.auth == summary


@pytest.mark.parametrize("provider", ["gmail", "yahoo", "outlook"])
def test_every_refusal_a_provider_sends_carries_one_of_its_codes(provider):
    """REFUSAL_CODES holds what `refusal` answers, over every combination of verdicts."""
    seen = set()
    verdicts = list(Verdict)
    for spf, dkim, dmarc, ptr in itertools.product(verdicts, repeat=4):
        for policy, fcrdns in itertools.product(("none", "reject"), (True, False)):
            result = AuthVerdicts(spf, "d", dkim, "d", dmarc, policy, ptr, fcrdns=fcrdns)
            reply = refusal(provider, result, peer=MX1, domain="shop.test")  # type: ignore[arg-type]
            if reply is not None:
                seen.add(reply.enhanced)
    assert seen == REFUSAL_CODES[provider]


def test_the_report_names_each_path_and_what_failed_there(summary, tmp_path):
    drill = summary_mod.summarise(RunDir.load(runs.drill(tmp_path / "run")))
    titles = [t.title for t in view.build(drill).sections]
    assert not any(t.startswith("Authentication") for t in titles)  # no sink verifies
    drill.auth = summary
    sections = {t.title: t for t in view.build(drill).sections}
    table = sections["Authentication on each path"]
    rows = {(r[0], r[1], r[2]): dict(zip(table.headers, r, strict=True)) for r in table.rows}
    secondary = rows[("secondary", "inbox", f"{MX2} (mx2.shop.test)")]
    assert (secondary["delivered"], secondary["clean"], secondary["DMARC fail"]) == ("4", "0", "2")
    assert secondary["DKIM pass"] == "0 %"
    assert secondary["did not pass"] == (
        "spf fail 1, neutral 1, softfail 1, temperror 1; dkim none 2, fail 1, temperror 1; "
        "dmarc fail 2, none 1, temperror 1; ptr fail 1, none 1, temperror 1"
    )
    refused = rows[("secondary", "gmail", f"{MX2} (mx2.shop.test)")]  # the refusals' EHLO
    assert refused["refused"] == "3"
    assert refused["did not pass"] == (
        "refused 421 4.7.26 1: spf temperror 1; dkim none 1; dmarc temperror 1; "
        "refused 550 5.7.25 1: ptr none 1; "
        "refused 550 5.7.26 1: spf fail 1; dkim none 1; dmarc fail 1"
    )
    # The whole run's: the deliveries' verdicts (the tallies less the refusals'), then
    # the refusals with theirs.
    assert rows[("(all)", "(all)", "")]["did not pass"] == (
        "spf fail 1, neutral 1, permerror 1, softfail 1, temperror 1; "
        "dkim none 3, fail 1, temperror 1; dmarc fail 2, none 1, temperror 1; "
        "ptr fail 1, none 1, temperror 1; "
        "refused 421 4.7.26 1: spf temperror 1; dkim none 1; dmarc temperror 1; "
        "refused 550 5.7.25 1: ptr none 1; "
        "refused 550 5.7.26 1: spf fail 1; dkim none 1; dmarc fail 1"
    )
    primary = rows[("primary", "inbox", f"{MX1} (mx1.shop.test)")]
    assert (primary["clean"], primary["DMARC pass"]) == ("3", "100 %")
    assert primary["did not pass"] == "spf permerror 1; dkim none 1"
    assert rows[("(all)", "gmail", "(all; enforce gmail)")]["checked"] == "3"
    assert rows[("(all)", "(all)", "")]["checked"] == "10"
    assert rows[("secondary", "(all)", "(all)")]["checked"] == "7"
    around = sections["Authentication around each fault"]
    during = [r for r in around.rows if r[1] == "during"]
    assert [r[2] for r in during] == ["(all)", f"secondary>gmail@{MX2}", f"secondary>inbox@{MX2}"]
    assert during[0][0] == "mta_stop on primary (4 s to 10 s)"
    assert "## Authentication on each path" in render_md.render(view.build(drill))


def test_compare_shows_the_whole_runs_figures_only(summary, tmp_path):
    """Each sink's, path's and phase's figures would be hundreds of rows: compare shows
    the run's, each with its sense."""
    a = summary_mod.summarise(RunDir.load(runs.drill(tmp_path / "run")))
    b = a.model_copy(update={"auth": summary})
    shown = {r.metric: (r.b, r.sense) for r in compare.rows(a, b) if r.group == "auth"}
    assert shown == {
        "dmarc_fail": (2, "lower"),
        "unauthenticated": (4, "lower"),
        "refused": (3, "lower"),
        "spf_pass_share": (pytest.approx(3 / 10), "higher"),
        "dkim_pass_share": (pytest.approx(3 / 10), "higher"),
        "dmarc_pass_share": (pytest.approx(4 / 10), "higher"),
        "ptr_pass_share": (pytest.approx(6 / 10), "higher"),
        "clean_share": (pytest.approx(0.3), "higher"),
    }


def test_the_printed_summary_says_which_paths_were_not_clean(summary, tmp_path):
    drill = summary_mod.summarise(RunDir.load(runs.drill(tmp_path / "run")))
    assert view.auth_lines(drill) == []
    drill.auth = summary
    assert view.auth_lines(drill) == [
        "auth: 10 checked at gmail, inbox: 3 clean, 2 delivered failing DMARC, "
        "4 unauthenticated, 3 refused (421 4.7.26 1, 550 5.7.25 1, 550 5.7.26 1)",
        f"  secondary>gmail@{MX2}: 3 of 3 not clean: "
        "refused 421 4.7.26 1: spf temperror 1; dkim none 1; dmarc temperror 1; "
        "refused 550 5.7.25 1: ptr none 1; "
        "refused 550 5.7.26 1: spf fail 1; dkim none 1; dmarc fail 1",
        f"  secondary>inbox@{MX2}: 4 of 4 not clean: spf fail 1, neutral 1, softfail 1, "
        "temperror 1; dkim none 2, fail 1, temperror 1; dmarc fail 2, none 1, temperror 1; "
        "ptr fail 1, none 1, temperror 1",
    ]


def test_in_a_run_with_the_sender_only_campaign_mail_counts():
    """A bounce (no X-Maildrill-Id) an MTA sends after a provider's refusal reaches a
    verifying sink too: not campaign mail, so left out when the sender's journal is there."""
    bounce = ("", "inbox", 9.0, MX2, "mx2.shop.test", "none", "none", "none", "pass")
    rows = [*RECEIPTS, bounce]
    kept = auth.summarise(receipts(rows), refusals(), *attempts(), VERIFYING, [], T0)
    left = auth.summarise(
        receipts(rows), refusals(), *attempts(), VERIFYING, [], T0, campaign_only=True
    )
    assert kept is not None
    assert left is not None
    assert (kept.delivered, left.delivered) == (8, 7)
    assert f"->inbox@{MX2}" in kept.paths
    assert f"->inbox@{MX2}" not in left.paths


def test_a_run_directory_names_the_server_from_the_senders_journal(tmp_path):
    """The hand-built drill (runs.drill) with verdicts in the primary's receipts: every
    path's server comes from attempts.csv as RunDir reads it (message 35, cut after the dot,
    was never accepted: its last attempt's server), recounted from the CSV."""
    run_dir = runs.drill(tmp_path / "run")
    path = run_dir / "receipts-primary.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    failing = {"spf": "fail", "dkim": "none", "dmarc": "fail", "ptr": "pass"}
    records = [
        dataclasses.replace(
            ReceiptRecord.parse(row),
            **(failing if int(row["msg_id"].rpartition("-")[2]) % 2 else dict.fromkeys(
                ("spf", "dkim", "dmarc", "ptr"), "pass")),
        )
        for row in rows
    ]  # fmt: skip
    runs.write_csv(path, ReceiptRecord, records)
    summary = runs.summarised(run_dir)  # the same read a partition at a time
    result = summary.auth
    assert result is not None
    assert list(result.paths) == ["primary>primary@127.0.0.1"]
    assert list(result.servers) == ["primary"]
    odd = [r for r in rows if int(r["msg_id"].rpartition("-")[2]) % 2]
    assert (result.delivered, result.dmarc_fail) == (len(rows), len(odd))
    assert result.clean == len(rows) - len(odd)
    (fault,) = result.faults
    onset, cleared = runs.T0 + 4.0, runs.T0 + 7.0
    times = [float(r["time"]) for r in rows]
    assert fault.before.delivered == sum(t < onset for t in times)
    assert fault.during.delivered == sum(onset <= t < cleared for t in times) == 0  # down
    assert fault.after.delivered == sum(t >= cleared for t in times)
    assert "35" in {r["msg_id"].rpartition("-")[2] for r in rows}  # the dropped one counts


@pytest.mark.parametrize("shares", [2, 3, 5, 20])  # 20: some shares hold no verdict
def test_shares_of_the_messages_added_give_the_whole(summary, shares):
    """Each share of the messages tallied on its own (as a run read a partition at a
    time is), the tallies added: the very `auth` part of the messages counted together.
    The shares' categories differ (a sink, a peer, a verdict only one share holds)."""
    a, per = attempts()
    every, refused = receipts(), refusals()
    ids = sorted(set(every["msg_id"]) | set(a["msg_id"]))
    share_of = {m: i % shares for i, m in enumerate(ids)}
    counted = tally.total(
        auth.tally(
            every[every["msg_id"].map(share_of) == s],
            refused,
            a[a["msg_id"].map(share_of) == s],
            per[per.index.map(share_of) == s],
        )
        for s in range(shares)
    )
    added = auth.finish(counted, refused, VERIFYING, [WINDOW], T0)
    assert added == summary
