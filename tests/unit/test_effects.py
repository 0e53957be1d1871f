"""Every effect through its decision method, with hand-built contexts: no sockets, no clock.

An effect is a pure answer to "this stage of this session, now": a reply, a delay, a socket
action or nothing (sinks/effects/base.py). The sink and proxy tests check that those answers
reach the wire; these check the answers themselves, boundaries included, where a socket
test could only sample them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from maildrill.journal import CsvJournal
from maildrill.records import FaultRecord
from sinks.config import EffectSpec
from sinks.effects import (
    EFFECTS,
    PROXY_EFFECTS,
    Action,
    Context,
    Delay,
    Direction,
    Effect,
    Pace,
    SessionInfo,
    Stage,
    build,
    kinds_for,
)
from sinks.effects.flap import Flap
from sinks.effects.greylist import Greylist
from sinks.host import EffectHost
from sinks.replies import (
    BUSY,
    PRESETS,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_MESSAGES,
    TOO_MANY_RECIPIENTS,
    Reply,
)

PEER = "127.0.0.9"


def ctx(
    now: float = 0.0,
    *,
    peer: str = PEER,
    active: int = 1,
    messages: int = 0,
    mail_from: str = "sender@example.com",
    recipients: list[str] | None = None,
    address: str = "",
    seed: int = 0,
) -> Context:
    """One stage of one session as a sink would describe it (sinks.sink.Sink.context)."""
    return Context(
        session=SessionInfo(id="s.1", peer_ip=peer, messages=messages),
        active_sessions=active,
        now=now,
        rng=random.Random(seed),
        mail_from=mail_from,
        recipients=list(recipients or []),
        address=address,
    )


def make(kind: str, proxy: bool = False, **params: Any) -> Effect:
    return build(kind, params, kinds_for("proxy" if proxy else "sink"))


# -- the registry -----------------------------------------------------------------------


def test_sinks_and_proxies_know_their_own_kinds():
    assert set(EFFECTS) == {
        "throttle",
        "connection_cap",
        "message_cap",
        "recipient_cap",
        "greylist",
        "latency",
        "reject",
        "mailboxes",
        "down",
        "hang",
        "drop",
        "busy",
        "flap",
    }
    assert set(PROXY_EFFECTS) == {
        "down",
        "hang",
        "busy",
        "drop",
        "reset",
        "latency",
        "bandwidth",
        "flap",
        "connection_cap",
    }
    # One name, two effects: a sink delays its replies, a proxy delays the link.
    assert make("latency", ms=1).stages
    assert not make("latency", ms=1).directions
    assert make("latency", proxy=True, ms=1).directions
    assert not make("latency", proxy=True, ms=1).stages


def test_an_unknown_kind_or_field_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown kind 'reset'; known: .*busy"):
        make("reset")  # a sink cannot send a TCP RST of its own
    with pytest.raises(ValidationError, match="colour"):
        make("busy", colour="red")
    with pytest.raises(ValidationError, match="max"):
        make("connection_cap")


# -- fixed answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "proxy", "stage", "decision"),
    [
        ("busy", False, Stage.CONNECT, BUSY),
        ("drop", False, Stage.DOT, Action.DROP),
        ("reset", True, Stage.CONNECT, Action.RESET),
    ],
)
def test_fixed_faults_answer_at_their_one_stage(kind, proxy, stage, decision):
    effect = make(kind, proxy=proxy)
    assert effect.stages == {stage}
    assert effect.decide(stage, ctx()) == decision
    assert not effect.directions


def test_busy_is_a_421_that_closes():
    reply = make("busy").decide(Stage.CONNECT, ctx())
    assert isinstance(reply, Reply)
    assert (reply.code, reply.enhanced, reply.closes) == (421, "4.3.2", True)


def test_hang_freezes_every_reply_and_the_commit_by_default():
    effect = make("hang")
    # Every reply (banner, any command's, the dot's) and the commit at the dot: held by the
    # host while the fault lasts (FREEZE); the protocol asks `reply` before each reply.
    assert effect.stages == {Stage.REPLY, Stage.DOT}
    assert {effect.decide(s, ctx()) for s in effect.stages} == {Action.FREEZE}
    assert not effect.directions


def test_hang_scope_new_only_keeps_new_connections_from_their_banner():
    effect = make("hang", scope="new")
    assert effect.stages == {Stage.CONNECT}
    assert effect.decide(Stage.CONNECT, ctx()) is Action.HANG  # never, not even after
    with pytest.raises(ValidationError, match="scope"):
        make("hang", scope="old")


def test_a_proxy_hang_holds_the_connection_and_freezes_the_link_both_ways():
    effect = make("hang", proxy=True)
    assert effect.stages == {Stage.CONNECT}
    assert effect.decide(Stage.CONNECT, ctx()) is Action.FREEZE
    assert effect.directions == set(Direction)
    assert {effect.shape(d, 100, random.Random(0)) for d in Direction} == {Action.FREEZE}
    new = make("hang", proxy=True, scope="new")
    assert (new.stages, new.directions) == ({Stage.CONNECT}, set())
    assert new.decide(Stage.CONNECT, ctx()) is Action.HANG


def test_reset_at_a_later_stage_but_never_at_ack():
    effect = make("reset", proxy=True, stage="dot")
    assert effect.stages == {Stage.DOT}
    assert effect.decide(Stage.DOT, ctx()) is Action.RESET
    with pytest.raises(ValidationError, match="cannot see when the server commits"):
        make("reset", proxy=True, stage="ack")
    with pytest.raises(ValidationError, match="not `reply`"):
        make("reset", proxy=True, stage="reply")


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.REPLY])
def test_reject_replies_its_code_at_its_stage(stage):
    effect = make("reject", stage=stage.value, code=554, enhanced="5.7.1", text="go away")
    assert effect.stages == {stage}
    assert effect.decide(stage, ctx()) == Reply(554, "5.7.1", "go away")


def test_reject_defaults_and_refusals():
    assert make("reject", stage="mail", code=451).decide(Stage.MAIL, ctx()) == Reply(
        451, "", "Error: rejected by maildrill"
    )
    for code in (399, 600, 250):
        with pytest.raises(ValidationError):
            make("reject", stage="mail", code=code)
    with pytest.raises(ValidationError, match="does not match"):
        make("reject", stage="rcpt", code=451, enhanced="5.7.1")
    with pytest.raises(ValidationError, match="not `reply`"):
        make("reject", stage="reply", code=451)  # a reply to what? every command's


# -- caps -----------------------------------------------------------------------------------


def test_connection_cap_counts_the_new_session_itself():
    # The sink counts a session before it asks (Sink.session_opened): `max` sessions pass.
    effect = make("connection_cap", max=3)
    assert effect.stages == {Stage.CONNECT}
    assert effect.decide(Stage.CONNECT, ctx(active=1)) is None
    assert effect.decide(Stage.CONNECT, ctx(active=3)) is None
    assert effect.decide(Stage.CONNECT, ctx(active=4)) == TOO_MANY_CONNECTIONS
    assert TOO_MANY_CONNECTIONS.closes
    assert make("connection_cap", max=0).decide(Stage.CONNECT, ctx(active=1)) is not None


def test_message_cap_refuses_the_mail_after_the_last_allowed_message():
    effect = make("message_cap", max=2)
    assert effect.stages == {Stage.MAIL}
    assert effect.decide(Stage.MAIL, ctx(messages=0)) is None
    assert effect.decide(Stage.MAIL, ctx(messages=1)) is None
    assert effect.decide(Stage.MAIL, ctx(messages=2)) == TOO_MANY_MESSAGES
    assert TOO_MANY_MESSAGES.closes
    assert make("message_cap", max=0).decide(Stage.MAIL, ctx(messages=0)) == TOO_MANY_MESSAGES


def test_recipient_cap_defers_recipients_past_the_limit():
    # `recipients` holds those accepted so far, without the one being asked about.
    effect = make("recipient_cap", max=2)
    assert effect.stages == {Stage.RCPT}
    assert effect.decide(Stage.RCPT, ctx(recipients=[])) is None
    assert effect.decide(Stage.RCPT, ctx(recipients=["a@x.test"])) is None
    full = ctx(recipients=["a@x.test", "b@x.test"])
    assert effect.decide(Stage.RCPT, full) == TOO_MANY_RECIPIENTS
    assert (TOO_MANY_RECIPIENTS.code, TOO_MANY_RECIPIENTS.closes) == (452, False)


def test_a_negative_cap_is_refused():
    for kind in ("connection_cap", "message_cap", "recipient_cap"):
        with pytest.raises(ValidationError):
            make(kind, max=-1)


# -- throttle -------------------------------------------------------------------------------


def take(effect: Effect, now: float, **context: Any) -> Any:
    return effect.decide(effect_stage(effect), ctx(now, **context))


def effect_stage(effect: Effect) -> Stage:
    (stage,) = effect.stages
    return stage


def test_throttle_starts_with_a_full_bucket_then_refills_at_rate():
    effect = make("throttle", rate=4)  # burst defaults to max(1, rate) = 4
    assert effect.stages == {Stage.MAIL}
    assert [take(effect, 0.0) for _ in range(4)] == [None] * 4
    refused = take(effect, 0.0)
    assert refused == Reply(450, "4.7.1", f"Error: too much mail from {PEER}")
    # A quarter second at 4/s is exactly one token: that one passes, the next does not.
    assert take(effect, 0.25) is None
    assert take(effect, 0.25) == refused


def test_throttle_window_edge_just_before_and_at_the_refill():
    early, on_time = make("throttle", rate=2), make("throttle", rate=2)
    for effect in (early, on_time):
        assert [take(effect, 10.0) is None for _ in range(3)] == [True, True, False]
    assert take(early, 10.499) is not None  # 0.998 of a token
    assert take(on_time, 10.5) is None  # one whole token


def test_throttle_saves_at_most_burst():
    effect = make("throttle", rate=1, burst=2)
    assert [take(effect, 0.0) is None for _ in range(3)] == [True, True, False]
    # A long quiet spell refills the bucket to `burst`, never beyond.
    assert [take(effect, 1000.0) is None for _ in range(3)] == [True, True, False]


def test_a_slow_rate_below_one_still_lets_the_first_through():
    effect = make("throttle", rate=0.1)  # burst max(1, 0.1) = 1
    assert take(effect, 0.0) is None
    assert take(effect, 9.9) is not None
    assert take(effect, 10.0) is None


def test_throttle_per_client_keeps_a_bucket_per_ip():
    effect = make("throttle", rate=1, per="client")
    assert take(effect, 0.0, peer="127.0.0.1") is None
    assert take(effect, 0.0, peer="127.0.0.2") is None
    reply = take(effect, 0.0, peer="127.0.0.1")
    assert isinstance(reply, Reply)
    assert "127.0.0.1" in reply.text


def test_throttle_per_sink_shares_one_bucket_across_ips():
    effect = make("throttle", rate=1)
    assert take(effect, 0.0, peer="127.0.0.1") is None
    assert take(effect, 0.0, peer="127.0.0.2") is not None


def test_throttle_per_domain_at_rcpt_keys_by_the_recipient_domain():
    effect = make("throttle", rate=1, per="domain")
    assert effect.stages == {Stage.RCPT}  # the default stage for per=domain
    assert take(effect, 0.0, address="a@One.test") is None
    assert take(effect, 0.0, address="b@two.test") is None
    assert take(effect, 0.0, address="c@one.TEST") is not None  # domains are caseless


def test_throttle_per_domain_at_dot_refuses_when_any_domain_is_spent():
    effect = make("throttle", rate=1, per="domain", stage="dot")
    assert effect.stages == {Stage.DOT}
    assert take(effect, 0.0, recipients=["a@one.test"]) is None
    assert take(effect, 0.0, recipients=["a@two.test", "b@one.test"]) is not None
    # Domains are taken in sorted order up to the first spent one: one.test refused
    # before two.test was charged, so two.test still has its token.
    assert take(effect, 0.0, recipients=["a@two.test"]) is None
    assert take(effect, 0.0, recipients=["a@two.test"]) is not None


def test_throttle_per_domain_cannot_take_tokens_at_mail():
    with pytest.raises(ValidationError, match="MAIL carries no recipient"):
        make("throttle", rate=1, per="domain", stage="mail")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_throttle_presets_reply_as_the_provider_with_the_peer_filled_in(preset):
    effect = make("throttle", rate=1, preset=preset)
    take(effect, 0.0)
    reply = take(effect, 0.0)
    template = PRESETS[preset]
    assert (reply.code, reply.enhanced) == (template.code, template.enhanced)
    assert "{peer}" not in reply.text
    assert PEER in reply.text
    assert 400 <= reply.code < 500


def test_throttle_custom_reply():
    effect = make("throttle", rate=1, stage="rcpt", reply="451 4.7.1 slow down")
    assert effect.stages == {Stage.RCPT}
    take(effect, 0.0)
    assert take(effect, 0.0) == Reply(451, "4.7.1", "slow down")
    with pytest.raises(ValidationError, match="not an SMTP reply"):
        make("throttle", rate=1, reply="slow down")


def test_throttle_refuses_a_rate_of_zero_and_a_burst_below_one():
    with pytest.raises(ValidationError):
        make("throttle", rate=0)
    with pytest.raises(ValidationError):
        make("throttle", rate=1, burst=0.5)


# -- greylist -------------------------------------------------------------------------------


def grey(effect: Effect, now: float, address: str = "rcpt@example.net", **context: Any) -> Any:
    return effect.decide(Stage.RCPT, ctx(now, address=address, **context))


def test_greylist_defers_the_first_try_and_accepts_the_retry_after_delay():
    effect = make("greylist", delay_s=5)
    assert effect.stages == {Stage.RCPT}
    first = grey(effect, 100.0)
    assert first == Reply(450, "4.2.0", "Greylisted, please try again in 5 seconds")
    assert grey(effect, 104.0) == Reply(450, "4.2.0", "Greylisted, please try again in 1 seconds")
    assert "in 1 seconds" in grey(effect, 104.9).text  # never "in 0 seconds"
    assert grey(effect, 105.0) is None  # exactly delay_s later
    assert grey(effect, 200.0) is None  # and from then on


def test_greylist_retry_after_counts_down_from_the_first_try():
    effect = make("greylist", delay_s=300)
    assert "in 300 seconds" in grey(effect, 0.0).text
    assert "in 180 seconds" in grey(effect, 120.0).text  # not reset by the retry


def test_greylist_keys_by_client_sender_and_recipient_caselessly():
    effect = make("greylist", delay_s=5)
    grey(effect, 0.0)
    assert grey(effect, 5.0) is None
    assert grey(effect, 5.0, address="RCPT@Example.NET") is None
    assert grey(effect, 5.0, mail_from="SENDER@example.com") is None
    assert grey(effect, 5.0, address="other@example.net") is not None
    assert grey(effect, 5.0, mail_from="other@example.com") is not None
    assert grey(effect, 5.0, peer="127.0.0.2") is not None


def test_greylist_holds_expire_s_of_triplets_not_the_whole_run():
    # A campaign mails each recipient about once: 10 new triplets a second for 1000 s.
    effect = make("greylist", delay_s=5, expire_s=100)
    assert isinstance(effect, Greylist)
    for i in range(10_000):
        assert grey(effect, i / 10, address=f"user{i}@example.net") is not None
        assert len(effect.first_seen) <= 100 * 10 + 1
    assert len(effect.first_seen) == 100 * 10 + 1  # those first seen in the last 100 s
    assert grey(effect, 1000.0, address="user9000@example.net") is None  # 100 s ago: known
    assert grey(effect, 1000.0, address="user8999@example.net") is not None  # forgotten


def test_greylist_forgets_a_triplet_not_retried_within_expire():
    effect = make("greylist", delay_s=5, expire_s=100)
    grey(effect, 0.0)
    assert grey(effect, 100.0) is None  # exactly expire_s: still known
    stale = make("greylist", delay_s=5, expire_s=100)
    grey(stale, 0.0)
    assert "in 5 seconds" in grey(stale, 100.5).text  # past it: a first try again


def test_greylist_with_no_delay_accepts_at_once():
    assert grey(make("greylist", delay_s=0), 0.0) is None


# -- latency (a sink's replies) ----------------------------------------------------------


def test_latency_delays_dot_by_default():
    effect = make("latency", ms=250)
    assert effect.stages == {Stage.DOT}
    assert effect.decide(Stage.DOT, ctx()) == Delay(0.25)


def test_latency_at_chosen_stages():
    effect = make("latency", ms=10, stages=["connect", "rcpt"])
    assert effect.stages == {Stage.CONNECT, Stage.RCPT}
    with pytest.raises(ValidationError):
        make("latency", ms=10, stages=[])


def test_latency_jitter_is_uniform_within_bounds_and_never_negative():
    effect = make("latency", ms=100, jitter_ms=20)
    rng_ctx = ctx(seed=7)
    delays = [effect.decide(Stage.DOT, rng_ctx) for _ in range(500)]
    seconds = [d.seconds for d in delays if isinstance(d, Delay)]
    assert len(seconds) == 500
    assert 0.080 <= min(seconds) < 0.085
    assert 0.115 < max(seconds) <= 0.120
    clamped = make("latency", ms=5, jitter_ms=50)
    lows = [clamped.decide(Stage.DOT, rng_ctx) for _ in range(200)]
    assert min(d.seconds for d in lows if isinstance(d, Delay)) == 0.0


def test_latency_jitter_follows_the_seed():
    effect = make("latency", ms=100, jitter_ms=20)
    runs = [ctx(seed=3), ctx(seed=3), ctx(seed=4)]
    one, same, other = ([effect.decide(Stage.DOT, c) for _ in range(5)] for c in runs)
    assert one == same != other


# -- a proxy's link effects ----------------------------------------------------------------


def test_link_latency_holds_each_chunk_downstream_by_default():
    effect = make("latency", proxy=True, ms=40)
    assert effect.directions == {Direction.DOWNSTREAM}
    rng = random.Random(0)
    # A propagation delay: the same for a byte as for a megabyte.
    assert effect.shape(Direction.DOWNSTREAM, 1, rng) == Delay(0.04)
    assert effect.shape(Direction.DOWNSTREAM, 1_000_000, rng) == Delay(0.04)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("upstream", {Direction.UPSTREAM}),
        ("downstream", {Direction.DOWNSTREAM}),
        ("both", {Direction.UPSTREAM, Direction.DOWNSTREAM}),
    ],
)
def test_link_effects_go_the_way_they_are_told(direction, expected):
    assert make("latency", proxy=True, ms=1, direction=direction).directions == expected
    assert make("bandwidth", proxy=True, rate=1, direction=direction).directions == expected


def test_link_latency_jitter_stays_within_bounds():
    effect = make("latency", proxy=True, ms=10, jitter_ms=30)
    rng = random.Random(1)
    seconds = []
    for _ in range(300):
        shaped = effect.shape(Direction.DOWNSTREAM, 100, rng)
        assert isinstance(shaped, Delay)
        seconds.append(shaped.seconds)
    assert min(seconds) == 0.0
    assert 0.035 < max(seconds) <= 0.040


def test_bandwidth_paces_by_size_both_ways_by_default():
    effect = make("bandwidth", proxy=True, rate=1000)
    assert effect.directions == {Direction.UPSTREAM, Direction.DOWNSTREAM}
    assert not effect.stages
    rng = random.Random(0)
    # Busy for as long as the chunk takes at `rate`: a Pace, not a Delay.
    assert effect.shape(Direction.UPSTREAM, 500, rng) == Pace(0.5)
    assert effect.shape(Direction.DOWNSTREAM, 4000, rng) == Pace(4.0)
    with pytest.raises(ValidationError):
        make("bandwidth", proxy=True, rate=0)


# -- listener faults -------------------------------------------------------------------------


class Listener:
    """A FaultHost that remembers what was done to it, and says when a phase has begun."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self.phases = asyncio.Event()

    async def close_listener(self) -> None:
        self.calls.append("close")

    async def open_listener(self) -> None:
        self.calls.append("open")
        if self.calls.count("open") >= 2:
            self.phases.set()

    def record(self, kind: str, state: str, params: dict[str, object]) -> None:
        self.rows.append((kind, state))


def test_down_closes_the_listener_and_opens_it_again():
    effect = make("down")
    assert not effect.stages
    assert not effect.directions
    host = Listener()
    asyncio.run(effect.start(host))
    assert host.calls == ["close"]
    asyncio.run(effect.stop(host))
    assert host.calls == ["close", "open"]


def test_flap_alternates_down_and_up_and_ends_up():
    async def run() -> Listener:
        host = Listener()
        effect = make("flap", period_s=0.01, duty=0.5)
        await effect.start(host)
        await asyncio.wait_for(host.phases.wait(), 10)  # two whole down phases
        await effect.stop(host)
        return host

    host = asyncio.run(run())
    assert host.calls[:4] == ["close", "open", "close", "open"]
    assert all(a != b for a, b in zip(host.calls, host.calls[1:], strict=False))
    assert host.calls[-1] == "open"  # stopped mid-phase or not, the listener is back
    assert host.rows == [("flap.down", "start" if c == "close" else "stop") for c in host.calls]


def test_flap_stopped_while_down_opens_the_listener():
    async def run() -> Listener:
        host = Listener()
        effect = make("flap", period_s=1000, duty=0.5)
        await effect.start(host)
        while not host.calls:  # the cycle task's first step closes the listener
            await asyncio.sleep(0)
        await effect.stop(host)
        return host

    host = asyncio.run(run())
    assert host.calls == ["close", "open"]
    assert host.rows == [("flap.down", "start"), ("flap.down", "stop")]


def test_flap_begins_no_phase_at_its_end():
    async def run() -> Listener:
        host = Listener()
        effect = make("flap", period_s=1)
        effect.until = time.time()  # the fault's window closes now
        await effect.start(host)
        assert isinstance(effect, Flap)
        assert effect.task is not None
        await effect.task
        await effect.stop(host)
        return host

    assert asyncio.run(run()).calls == []


def test_flap_duty_is_a_share_of_the_period():
    for duty in (0, 1, 1.5):
        with pytest.raises(ValidationError):
            make("flap", period_s=1, duty=duty)
    with pytest.raises(ValidationError):
        make("flap", period_s=0)


# -- the host: order and probability ----------------------------------------------------------


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[CsvJournal]:
    journal = CsvJournal(tmp_path / "faults.csv", FaultRecord)
    yield journal
    journal.close()


def host_with(faults: CsvJournal, *specs: dict[str, Any], seed: int = 0) -> EffectHost:
    host = EffectHost("mx", 0, random.Random(seed), faults)
    for spec in specs:
        asyncio.run(host.add_effect(EffectSpec.model_validate(spec), origin="behaviour"))
    return host


def test_the_first_reply_in_order_wins_and_delays_let_the_next_one_speak(faults):
    host = host_with(
        faults,
        {"kind": "latency", "ms": 0, "stages": ["rcpt"]},
        {"kind": "recipient_cap", "max": 0},
        {"kind": "reject", "stage": "rcpt", "code": 550},
    )
    decided = asyncio.run(host.decide_kind(Stage.RCPT, ctx()))
    assert decided == ("recipient_cap", TOO_MANY_RECIPIENTS)
    assert asyncio.run(host.decide_kind(Stage.MAIL, ctx())) is None


def test_probability_is_a_fresh_draw_for_each_decision(faults):
    host = host_with(faults, {"kind": "busy", "probability": 0.25}, seed=5)

    async def ask() -> list[Any]:
        return [await host.decide(Stage.CONNECT, ctx()) for _ in range(2000)]

    answers = asyncio.run(ask())
    busy = answers.count(BUSY)
    assert answers.count(None) + busy == 2000
    assert 400 < busy < 600  # 500 expected; 5 standard deviations either side


def spec(kind: str, **params: Any) -> EffectSpec:
    return EffectSpec.model_validate({"kind": kind, **params})


def test_a_freeze_holds_the_stage_until_the_effects_change_then_asks_again(faults):
    """The host never hands a FREEZE out: it holds the caller, naming the kind, and asks
    again whenever an effect comes or goes; what answers then is whatever is in force."""
    host = host_with(faults)

    async def steps() -> list[Any]:
        hang = await host.add_effect(spec("hang"), origin="command")
        await host.add_effect(spec("reject", stage="dot", code=451), origin="command")
        context = ctx()
        asked = asyncio.create_task(host.decide_kind(Stage.DOT, context))
        seen: list[Any] = []
        for change in ("before", "latency added", "hang removed"):
            if change == "latency added":
                await host.add_effect(spec("latency", ms=0, stages=["dot"]), origin="command")
            elif change == "hang removed":
                await host.remove_effect(hang.id)
            for _ in range(5):  # loop turns, not time: the task runs until it waits
                await asyncio.sleep(0)
            seen.append((change, asked.done(), context.session.held_by))
        return [*seen, await asked]

    assert asyncio.run(steps()) == [
        ("before", False, "hang"),
        ("latency added", False, "hang"),  # asked again, still frozen: the hang comes first
        ("hang removed", True, ""),
        ("reject", Reply(451, "", "Error: rejected by maildrill")),
    ]


def test_a_caller_cancelled_while_frozen_is_let_go(faults):
    """A client that leaves cancels its session where the freeze holds it: nothing after
    (no commit at the dot) runs, and the session is no longer marked held."""
    host = host_with(faults, {"kind": "hang"})

    async def steps() -> tuple[bool, str]:
        context = ctx()
        asked = asyncio.create_task(host.decide_kind(Stage.REPLY, context))
        for _ in range(5):
            await asyncio.sleep(0)
        asked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asked
        return asked.cancelled(), context.session.held_by

    assert asyncio.run(steps()) == (True, "")
