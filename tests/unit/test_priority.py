"""Stream priorities: the due queue's order, the dispatcher that hands out by it when the
sender falls behind, and the plan that tells each message's stream without building it."""

from __future__ import annotations

import hashlib
import random

import pytest

from loadtest.campaign import MessageFactory, StreamPlan, StreamSpec
from loadtest.scenario import load_scenario
from loadtest.schedule import SCAN_LIMIT, Dispatcher, DueQueue, Priority, Schedule, Stage, Ticket
from tests.helpers import REPO, merge, scenario_refused


def ticket(index: int, due: float, attempt: int = 1) -> Ticket:
    return Ticket(index, attempt, due, due)


def test_due_queue_takes_priority_then_due_then_retries_first_then_arrival():
    q = DueQueue()
    q.push(ticket(0, 1.0), priority=0, at=1.0, retry=False)
    q.push(ticket(1, 2.0), priority=5, at=2.0, retry=False)
    q.push(ticket(2, 1.5), priority=5, at=1.5, retry=False)
    q.push(ticket(3, 1.5, attempt=2), priority=5, at=1.5, retry=True)  # same due as 2: retry first
    q.push(ticket(4, 1.5), priority=5, at=1.5, retry=False)  # same due, same kind as 2: after it
    q.push(ticket(5, 0.5), priority=-1, at=0.5, retry=True)
    assert q.head() == (5, 1.5)
    assert [q.pop().index for _ in range(len(q))] == [3, 2, 4, 1, 0, 5]
    assert q.head() is None


def pairs(d: Dispatcher, now: float) -> list[int]:
    """Every ticket due by `now`, in the order handed out, each done at once."""
    out = []
    while isinstance(t := d.take(now), Ticket):
        out.append(t.index)
        d.done(t)
    return out


def test_a_sender_behind_takes_the_higher_priority_stream_first_each_in_schedule_order():
    high = {k for k in range(40) if k % 4 == 0}
    d = Dispatcher(Schedule([Stage(4, 10)]), priority=Priority(lambda k: int(k in high), 1))
    taken = pairs(d, 1.95)  # 1.95 s behind: the first 20 messages are due
    assert taken == [0, 4, 8, 12, 16] + [k for k in range(20) if k not in high]
    assert d.take(1.95) == pytest.approx(0.05)  # the next (k=20) is due at 2.0
    assert d.take(2.0).index == 20


def test_a_sender_keeping_up_sends_in_schedule_order_whatever_the_priorities():
    d = Dispatcher(Schedule([Stage(2, 10)]), priority=Priority(lambda k: k % 3, 2))
    taken = []
    for k in range(20):
        t = d.take(k / 10)  # called exactly when each message falls due
        assert isinstance(t, Ticket)
        taken.append(t.index)
        d.done(t)
    assert taken == list(range(20))


def test_a_due_retry_goes_by_its_message_s_priority():
    prio = Priority(lambda k: 1 if k in (0, 3) else 0, 1)
    d = Dispatcher(Schedule([Stage(10, 1)]), priority=prio)
    first, second = d.take(0.0), d.take(1.0)
    assert (first.index, second.index) == (0, 1)
    d.retry(first, at=1.5, avoid="primary")  # high priority, due at 1.5
    d.retry(second, at=1.2, avoid="primary")  # low priority, due earlier, at 1.2
    # At 4.5 the sender is behind: due are the retries of 0 and 1, and fresh 2, 3, 4.
    order = []
    while isinstance(t := d.take(4.5), Ticket):
        order.append((t.index, t.attempt))
        d.done(t)
    assert order == [(0, 2), (3, 1), (1, 2), (2, 1), (4, 1)]
    assert d.pending() == 5  # 5..9 not yet due


def test_with_one_priority_for_all_the_order_is_the_one_without_priorities():
    """The due queue with equal priorities and the dispatcher without them: the same
    tickets in the same order, through random takes, retries, requeues and stalls."""
    schedule = Schedule([Stage(3, 20), Stage(2, 5, 40)])
    plain, queued = Dispatcher(schedule), Dispatcher(schedule, priority=Priority(lambda k: 7, 7))
    rng = random.Random(14)
    now, handed, again = 0.0, 0, 0
    held: list[tuple[Ticket, Ticket]] = []
    while (a := plain.take(now)) is not None:
        b = queued.take(now)
        assert a == b
        if isinstance(a, Ticket):
            assert isinstance(b, Ticket)
            held.append((a, b))
            handed += 1
        while held and rng.random() < 0.6:  # some attempts end, in any order
            ta, tb = held.pop(rng.randrange(len(held)))
            fate = rng.random()
            if fate < 0.2 and ta.attempt < 4:
                at = now + rng.choice((0.0, 0.2, 1.0))
                plain.retry(ta, at, "primary")
                queued.retry(tb, at, "primary")
                again += 1
            elif fate < 0.25:
                plain.requeue(ta, now + 0.1)
                queued.requeue(tb, now + 0.1)
                again += 1
            else:
                plain.done(ta)
                queued.done(tb)
        now += rng.choice((0.0, 0.01, 0.05, 0.3, 1.5))  # now and then far behind
    assert queued.take(now) is None
    assert handed == schedule.total + again
    assert again > 30


def test_a_long_backlog_is_classified_a_bounded_number_at_a_time():
    calls: list[int] = []

    def of(k: int) -> int:
        calls.append(k)
        return 1 if k == 900 else 0

    d = Dispatcher(Schedule([Stage(10, 100)]), priority=Priority(of, 1))
    handed = []
    for _ in range(5):
        before = len(calls)
        t = d.take(9.99)
        assert isinstance(t, Ticket)
        assert len(calls) - before <= SCAN_LIMIT
        handed.append(t.index)
    # Message 900 is the first handed out once a take has reached it, before every low one
    # still waiting; those came in schedule order until then.
    assert handed == [0, 1, 2, 900, 3]
    assert d.pending() == 1000 - 5 + 5  # five in flight, the rest due or unstarted


STREAMS = [
    StreamSpec(name="promotional", weight=3),
    StreamSpec(name="transactional", weight=1, priority=10),
    StreamSpec(name="digest", weight=0.5, priority=-1),
]


def test_the_plan_names_the_stream_the_factory_builds():
    plan = StreamPlan(STREAMS, seed=5)
    factory = MessageFactory(STREAMS, "run", seed=5)
    for k in range(400):
        stream, _ = factory.envelope(k)
        assert plan.stream(k) == stream
        assert plan.priority(k) == {"promotional": 0, "transactional": 10, "digest": -1}[stream]
    assert plan.prioritised
    assert not StreamPlan(STREAMS[:1]).prioritised


@pytest.mark.parametrize(
    ("name", "digest"),
    [("default", "2b9884a498fe7db9"), ("streams", "a66a2e23672576f1"),
     ("bounces", "e23e4baf7e054f3f")],
)  # fmt: skip
def test_the_bundled_campaigns_build_the_messages_they_built_before_priorities(name, digest):
    """Digests taken on main before the priority key: the plan's draw is the factory's."""
    scenario = load_scenario(REPO / "scenarios" / f"{name}.yaml")
    factory = MessageFactory(scenario.streams(), "run", scenario.campaign.seed)
    h = hashlib.sha256()
    for k in range(300):
        m = factory.build(k, 0.0)
        h.update(m.stream.encode() + b"|" + m.data)
    assert h.hexdigest()[:16] == digest
    assert scenario.campaign.priority() is None  # no priorities: the schedule's order


def test_campaign_priority_and_unique_stream_names():
    data = load_scenario(REPO / "scenarios" / "streams.yaml").model_dump(mode="json")
    data["campaign"]["streams"][0]["priority"] = 5  # transactional
    from loadtest.scenario import parse_scenario

    priority = parse_scenario(data, "s.yaml").campaign.priority()
    assert priority is not None
    assert priority.highest == 5
    plan = parse_scenario(data, "s.yaml").campaign.stream_plan()
    assert {priority.of(k) for k in range(50) if plan.stream(k) == "transactional"} == {5}
    twice = merge(data, {})
    twice["campaign"]["streams"][1]["name"] = "transactional"
    scenario_refused(twice, "streams", "unique", "transactional")
