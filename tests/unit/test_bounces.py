"""Bounces without sockets: the code rules, the suppression list, the `mailboxes` effect,
unknown recipients in the campaign, routing that never fails over on a 5xx, and the
`bounces` part of the summary on a hand-built run with known answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loadtest.bounce_codes import bounce_class, severity, status_key, suppresses
from loadtest.campaign import MessageFactory, StreamSpec
from loadtest.outcomes import Outcome, Phase
from loadtest.retry import RetryPolicy
from loadtest.routing import Breakers, ByStream, CircuitState, Failover, Result, Weighted
from loadtest.suppression import SUPPRESSED, Suppression
from maildrill.mailboxes import UNKNOWN_PREFIX, local_matches, unknown_address
from maildrill.records import AttemptRecord
from sinks.effects import Context, SessionInfo, Stage, build
from sinks.replies import NO_SUCH_USER
from tests import runs
from tests.runs import T0, write_csv

# -- the code rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "enhanced", "hard_or_soft", "kind", "key"),
    [
        (550, "5.1.1", "hard", "5.1.x", "550 5.1.1"),
        (550, "5.5.0", "hard", "5.5.x", "550 5.5.0"),
        (552, "", "hard", "5.x.x", "552"),
        (554, "5.7.1", "hard", "5.7.x", "554 5.7.1"),
        (450, "4.2.0", "soft", "4.2.x", "450 4.2.0"),
        (421, "", "soft", "4.x.x", "421"),
        (550, "4.1.1", "hard", "5.x.x", "550 4.1.1"),  # an enhanced code of the wrong class
        (250, "2.1.5", None, "2.1.x", "250 2.1.5"),
    ],
)
def test_a_reply_is_classed_by_its_codes(code, enhanced, hard_or_soft, kind, key):
    assert severity(code) == hard_or_soft
    assert bounce_class(code, enhanced) == kind
    assert status_key(code, enhanced) == key


@pytest.mark.parametrize(
    ("stage", "code", "enhanced", "expected"),
    [
        ("rcpt", 550, "5.1.1", True),  # Gmail, Postfix: no such user
        ("rcpt", 550, "5.5.0", True),  # Outlook.com: no such mailbox, said as protocol
        ("dot", 552, "", True),  # Yahoo: after DATA, no enhanced code
        ("rcpt", 550, "5.2.1", True),  # mailbox disabled
        ("rcpt", 550, "5.7.1", False),  # policy: about the sender, not the address
        ("dot", 554, "5.7.1", False),
        ("dot", 552, "5.3.4", False),  # message too big
        ("dot", 550, "5.6.0", False),  # content
        ("mail", 550, "5.1.8", False),  # before any recipient: says nothing of one
        ("greeting", 554, "", False),
        ("rcpt", 450, "4.1.1", False),  # soft: the address may yet take mail
    ],
)
def test_which_hard_bounces_suppress_the_address(stage, code, enhanced, expected):
    assert suppresses(stage, code, enhanced) is expected


def test_the_suppression_list_ignores_case():
    suppression = Suppression()
    assert suppression.add("NoSuchUser.1@Gmail.test")
    assert not suppression.add("nosuchuser.1@gmail.test")
    assert "NOSUCHUSER.1@GMAIL.TEST" in suppression
    assert "nosuchuser.2@gmail.test" not in suppression
    assert len(suppression) == 1


# -- the mailboxes effect ------------------------------------------------------------------


def ctx(address: str = "", recipients: list[str] | None = None) -> Context:
    return Context(
        session=SessionInfo(id="s.1", peer_ip="127.0.0.9"),
        active_sessions=1,
        now=0.0,
        rng=random.Random(0),
        recipients=list(recipients or []),
        address=address,
    )


@pytest.mark.parametrize("preset", ["gmail", "outlook", "postfix"])
def test_an_unknown_mailbox_is_refused_at_rcpt_in_the_providers_words(preset):
    effect = build("mailboxes", {"preset": preset})
    assert effect.stages == frozenset({Stage.RCPT})
    dead = unknown_address(3, "gmail.test")
    reply = effect.decide(Stage.RCPT, ctx(dead))
    expected = NO_SUCH_USER[preset]
    assert (reply.code, reply.enhanced) == (expected.code, expected.enhanced)
    assert reply.text == expected.text.replace("{address}", dead)
    assert effect.decide(Stage.RCPT, ctx("user12@gmail.test")) is None


def test_the_presets_carry_each_providers_codes():
    assert [(r.code, r.enhanced) for r in NO_SUCH_USER.values()] == [
        (550, "5.1.1"),  # gmail
        (552, ""),  # yahoo
        (550, "5.5.0"),  # outlook
        (550, "5.1.1"),  # postfix
    ]
    assert "NoSuchUser" in NO_SUCH_USER["gmail"].text


def test_yahoo_refuses_the_whole_message_after_data():
    effect = build("mailboxes", {"preset": "yahoo"})
    assert effect.stages == frozenset({Stage.DOT})
    dead = unknown_address(0, "yahoo.test")
    reply = effect.decide(Stage.DOT, ctx(recipients=["user1@yahoo.test", dead]))
    assert (reply.code, reply.enhanced) == (552, "")
    assert effect.decide(Stage.DOT, ctx(recipients=["user1@yahoo.test"])) is None


def test_domains_pattern_reply_and_stage_narrow_or_replace_the_preset():
    effect = build(
        "mailboxes",
        {"domains": ["Outlook.TEST"], "unknown": "gone*", "reply": "550 5.1.10 no {address}"},
    )
    assert effect.decide(Stage.RCPT, ctx("Gone1@outlook.test")).text == ("no Gone1@outlook.test")
    assert effect.decide(Stage.RCPT, ctx("gone1@gmail.test")) is None  # another domain
    assert effect.decide(Stage.RCPT, ctx(unknown_address(1, "outlook.test"))) is None
    at_dot = build("mailboxes", {"preset": "gmail", "stage": "dot"})
    assert at_dot.stages == frozenset({Stage.DOT})
    with pytest.raises(ValueError, match="4xx or 5xx"):
        build("mailboxes", {"reply": "250 2.0.0 fine"})


# -- unknown recipients in the campaign ---------------------------------------------------

STREAM = StreamSpec(recipients_min=1, recipients_max=4, size_sigma=0.3)


def test_a_share_of_zero_makes_exactly_the_messages_without_the_key():
    plain = MessageFactory([STREAM], "r", seed=5)
    zero = MessageFactory([StreamSpec(**{**vars(STREAM), "unknown_recipients": 0.0})], "r", 5)
    for k in range(300):
        assert plain.build(k) == zero.build(k)


def test_unknown_recipients_replace_a_share_of_recipients_and_nothing_else():
    plain = MessageFactory([STREAM], "r", seed=5)
    spec = StreamSpec(**{**vars(STREAM), "unknown_recipients": 0.25, "unknown_addresses": 3})
    mixed, again = MessageFactory([spec], "r", seed=5), MessageFactory([spec], "r", seed=5)
    total = unknown = 0
    for k in range(2000):
        a, b = plain.build(k), mixed.build(k)
        assert b == again.build(k)  # deterministic
        assert mixed.envelope(k) == (b.stream, b.recipients)
        assert len(a.recipients) == len(b.recipients)
        assert a.size == b.size
        for before, after in zip(a.recipients, b.recipients, strict=True):
            total += 1
            if after != before:
                unknown += 1
                local, _, domain = after.partition("@")
                assert domain == before.partition("@")[2]
                assert local in {f"{UNKNOWN_PREFIX}{n}" for n in range(3)}
                assert local_matches(after)
            assert not local_matches(before)  # an ordinary recipient is never of the form
    assert 0.22 < unknown / total < 0.28


# -- a 5xx never fails over ------------------------------------------------------------------

HARD = [
    Result(Outcome.REJECTED, phase, code)
    for phase, code in [
        (Phase.GREETING, 554),
        (Phase.EHLO, 550),
        (Phase.MAIL, 553),
        (Phase.RCPT, 550),
        (Phase.DATA, 554),
        (Phase.DOT, 552),
    ]
]


def policies() -> list:
    shared = Breakers(threshold=1, cooldown_s=2.0)
    return [
        Failover(["primary", "secondary"], Breakers(threshold=1, cooldown_s=2.0)),
        Weighted({"primary": 1000, "secondary": 1}, Breakers(threshold=1, cooldown_s=2.0)),
        ByStream({"promo": Failover(["primary", "secondary"], shared)}, shared),
    ]


@pytest.mark.parametrize("policy", policies(), ids=["failover", "weighted", "by-stream"])
def test_no_5xx_opens_a_circuit_or_moves_mail(policy):
    """Threshold 1: a single server failure would open the circuit. Every 5xx, at every
    phase, many times: the primary stays closed and keeps the mail."""
    for t in range(60):
        assert policy.choose("promo", float(t)) == "primary"
        policy.report("primary", HARD[t % len(HARD)], float(t))
        assert policy.states()["primary"] is CircuitState.CLOSED


@pytest.mark.parametrize("result", HARD, ids=lambda r: r.phase.value)
def test_a_5xx_is_never_tried_again_anywhere(result):
    eager = RetryPolicy(max_attempts=10, retry_after_dot=True, defer_to_next=True)
    assert not result.server_failure
    for attempt in (1, 2, 9):
        assert eager.decide("primary", result, attempt) is None


def test_a_half_open_probe_answered_5xx_closes_the_circuit():
    policy = Failover(["primary", "secondary"], Breakers(threshold=1, cooldown_s=2.0))
    policy.report("primary", Result(Outcome.REFUSED, Phase.CONNECT), 0.0)
    assert policy.choose("promo", 2.0) == "primary"  # the probe
    policy.report("primary", HARD[3], 2.1)  # a 550 at RCPT: a server answering
    assert policy.states()["primary"] is CircuitState.CLOSED


# -- the bounces part, on a hand-built run --------------------------------------------------

RUN = "bx"


def row(
    k: int,
    attempt: int = 1,
    server: str = "primary",
    outcome: str = "accepted",
    phase: str = "dot",
    code: int | None = 250,
    enhanced: str = "",
    final: bool = True,
    replies: str = "250",
    stream: str = "promotional",
    at: float = 0.0,
) -> AttemptRecord:
    sent = [c for c in replies.split(";") if c not in ("s", "f")]
    return AttemptRecord(
        run_id=RUN, worker="local", msg_id=f"{RUN}-{k}", stream=stream, attempt=attempt,
        server=server, intended=T0 + k, due=T0 + k + at, start=T0 + k + at, connected=None,
        end=T0 + k + at + 0.01, phase=phase, code=code, enhanced=enhanced, outcome=outcome,
        bytes=100, recipients=len(sent), recipients_refused=0, new_connection=False,
        retry=attempt > 1, failover=server != "primary", final=final, maybe_duplicate=False,
        error="", rcpt_replies=replies,
    )  # fmt: skip


def hand_run(tmp_path: Path) -> Path:
    """Ten messages, each a case with a known answer (in the comments)."""
    rows = [
        # 0: three recipients, the second unknown: delivered to two, one hard bounce.
        row(0, replies="250;550 5.1.1;250"),
        # 1: greylisted, then accepted: no bounce.
        row(1, outcome="deferred", phase="rcpt", code=450, enhanced="4.2.0", final=False,
            replies="450 4.2.0"),
        row(1, attempt=2, at=1.0),
        # 2: Yahoo after DATA: the message refused, its recipient a hard bounce (552).
        row(2, outcome="rejected", code=552, replies="250"),
        # 3: one recipient suppressed, the other delivered.
        row(3, replies="s;250"),
        # 4: every recipient suppressed: not sent (no SMTP attempt).
        row(4, server="", outcome=SUPPRESSED, phase="", code=None, replies="s;s"),
        # 5: the second recipient deferred at RCPT while the first was taken: soft bounce.
        row(5, replies="250;452 4.5.3"),
        # 6: refused connection, given up: failed, but no reply, so no bounce.
        row(6, outcome="refused", phase="connect", code=None, replies=""),
        # 7: deferred, a retry still due when the run ended: in flight, not yet a bounce.
        row(7, outcome="deferred", phase="rcpt", code=450, enhanced="4.7.1", final=False,
            replies="450 4.7.1"),
        # 8: refused by the primary, policy-rejected by the secondary: hard, there.
        row(8, outcome="refused", phase="connect", code=None, final=False, replies=""),
        row(8, attempt=2, server="secondary", outcome="rejected", phase="rcpt", code=550,
            enhanced="5.7.1", replies="550 5.7.1", stream="promotional", at=0.5),
        # 9: deferred (final 0), then every recipient suppressed: the suppressed row ends
        # it, so the 4xx was its last word (soft) and it failed.
        row(9, outcome="deferred", phase="rcpt", code=450, enhanced="4.2.0", final=False,
            replies="450 4.2.0", stream="transactional"),
        row(9, attempt=2, server="", outcome=SUPPRESSED, phase="", code=None, replies="s",
            stream="transactional", at=1.0),
    ]  # fmt: skip
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_csv(run_dir / "attempts.csv", AttemptRecord, rows)
    (run_dir / "run.json").write_text(json.dumps({"run_id": RUN, "t0": T0, "planned": 10}))
    return run_dir


def test_bounces_per_recipient_on_a_hand_built_run(tmp_path):
    summary = runs.summarised(hand_run(tmp_path))
    b = summary.bounces
    # Recipients carried by an attempt: 0 (3), 1, 2, 3 (1 of 2), 5 (2), 6, 7, 8, 9.
    assert b.attempted == 3 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 1
    assert (b.hard, b.soft) == (3, 2)  # 0, 2, 8; 5, 9
    assert b.rate == pytest.approx(5 / 12, abs=1e-6)
    assert b.hard_rate == pytest.approx(3 / 12, abs=1e-6)
    assert b.by_status == {"550 5.1.1": 1, "552": 1, "550 5.7.1": 1, "452 4.5.3": 1,
                           "450 4.2.0": 1}  # fmt: skip
    assert b.by_class == {"5.1.x": 1, "5.x.x": 1, "5.7.x": 1, "4.5.x": 1, "4.2.x": 1}
    assert b.suppressed == 1 + 2 + 1  # 3's first, both of 4, 9's
    # 8 was carried to both servers: attempted at each, bounced by the secondary.
    assert b.per_server["primary"].model_dump() == {
        "attempted": 12, "hard": 2, "soft": 2, "rate": round(4 / 12, 6)}  # fmt: skip
    assert b.per_server["secondary"].model_dump() == {
        "attempted": 1, "hard": 1, "soft": 0, "rate": 1.0}  # fmt: skip
    assert b.per_stream["transactional"].model_dump() == {
        "attempted": 1, "hard": 0, "soft": 1, "rate": 1.0}  # fmt: skip
    assert b.unknown is None  # no scenario: no plan to read
    m = summary.messages
    assert (m.suppressed, m.not_sent, m.attempted) == (1, 0, 9)
    assert (m.failed, m.in_flight) == (4, 1)  # 2, 6, 8, 9 failed; 7 in flight
    # No analysis takes a suppressed row for an attempt.
    assert sorted(summary.errors) == [
        "450 4.2.0", "450 4.7.1", "550 5.7.1", "552", "refused at connect"]  # fmt: skip
    assert set(summary.throughput.per_server) == {"primary"}


def test_a_journal_written_before_rcpt_replies_counts_each_attempts_own_reply(tmp_path):
    """No rcpt_replies column (and so no suppressed rows): each recipient of an attempt
    takes the attempt's own reply; a refusal at one RCPT of an accepted message is not
    known."""
    run_dir = hand_run(tmp_path)
    path = run_dir / "attempts.csv"
    lines = path.read_text().splitlines()
    # Cut from rcpt_replies on (the columns added after it too: addr, dns_name, ...).
    cut = lines[0].split(",").index("rcpt_replies")
    old = [",".join(line.split(",")[:cut]) for line in lines if f",{SUPPRESSED}," not in line]
    path.write_text("\n".join(old) + "\n")
    b = runs.summarised(run_dir).bounces
    # 0 (3 recipients), 1, 2, 3, 5 (2), 6, 7, 8, 9: 12; hard: 2 (552), 8 (5.7.1); 7 and 9
    # still had a retry due: no soft bounce.
    assert (b.attempted, b.hard, b.soft, b.suppressed) == (12, 2, 0, 0)
    assert b.by_status == {"552": 1, "550 5.7.1": 1}
