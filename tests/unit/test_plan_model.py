"""The fluid queue of `maildrill plan` against fluid-queue cases worked by hand.

The reference case (every number below is arithmetic on it, not the code's output): a flat
100 msgs/s for an hour; a primary of 90 and a secondary of 60 msgs/s in a pool (150 in
all); the primary gone from 30 min for 10 min. During the outage 60 msgs/s go out, so the
backlog grows at 40/s to (100 - 60) * 600 = 24,000 at 40 min, then drains at 150 - 100 =
50/s in 480 s, empty at 48 min. A message due x s into the outage is delivered when the
departures reach it: before the outage ends (60 y = 100 x) for x <= 360, so 2x/3 late;
after, 360 - x/3 late. So the latest is 240 s (x = 360), and the share of messages later
than l is (1080 - 4.5 l) * 100 / 360,000: p95 200 s, p99 232 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.plan import fluid
from loadtest.plan.evaluate import (
    Outage,
    Question,
    StreamGroup,
    Timings,
    answer,
    extra_for_headroom,
    extra_needed,
    extra_servers,
)

HOUR = 3600.0
ONE = (StreamGroup(0, (("all", 1.0),)),)
POOL = {"primary": 90.0, "secondary": 60.0}
# Under failover the first delivers alone: the same 150 then 60 msgs/s as the pool's.
CHAIN = {"primary": 150.0, "secondary": 60.0}


def flat(rate: float, seconds: float) -> fluid.Offered:
    return fluid.Offered((fluid.Segment(0.0, seconds, rate, rate),))


def question(**kw: object) -> Question:
    base: dict[str, object] = dict(
        offered=flat(100, HOUR),
        groups=ONE,
        servers=POOL,
        routing="pool",
        outage=Outage("primary", 1800, 600),
        timings=Timings(),
        headroom=0.2,
        deadline_s=HOUR,
        step_s=1.0,
    )
    base.update(kw)
    return Question(**base)  # type: ignore[arg-type]


def test_the_backlog_peaks_at_the_outage_end_and_drains_at_the_spare_rate():
    a = answer(question())
    assert a.peak_backlog == pytest.approx(24_000, abs=1e-6)
    assert a.peak_backlog_at_s == 2400
    assert a.drained_at_s == pytest.approx(2400 + 24_000 / 50, abs=1.0)  # 2880
    assert a.supply.starts == (0.0, 1800.0, 2400.0)
    assert a.supply.rates == (150.0, 60.0, 150.0)
    # Drained before the window ends: the last message goes as it is due.
    assert a.completion_s == pytest.approx(HOUR, abs=0.01)
    assert a.met


def test_lateness_percentiles_are_the_hand_computed_ones():
    late = answer(question()).lateness[0]
    assert late is not None
    step = 1.0  # each step's arrivals are taken at their middle message
    assert late.p50 == 0.0  # 70 % of the mail is never late
    assert late.p95 == pytest.approx(200, abs=step)
    assert late.p99 == pytest.approx(232, abs=step)
    assert late.max == pytest.approx(240, abs=step)
    assert late.undelivered == 0


@pytest.mark.parametrize("step", [0.5, 7.0, 60.0])
def test_a_coarser_or_finer_step_moves_the_answer_by_at_most_a_step(step):
    a = answer(question(step_s=step))
    # the backlog is read at step ends: it may miss the peak by part of a step's growth
    assert a.peak_backlog == pytest.approx(24_000, abs=40 * step)
    assert a.drained_at_s == pytest.approx(2880, abs=step)
    late = a.lateness[0]
    assert late is not None
    assert late.max == pytest.approx(240, abs=step)


def test_the_failover_gap_delivers_nothing_and_failback_keeps_the_server_out():
    # 30 s with nothing delivered (100/s piles up), 570 s at 60, then 60 s more at 60
    # before the primary is used again: 3,000 + 22,800 + 2,400 = 28,200 at 2,460 s,
    # drained at 50/s in 564 s.
    a = answer(question(servers=CHAIN, routing="failover",
                        timings=Timings(detection_s=10, failover_s=30, failback_s=60)))  # fmt: skip
    assert a.supply.starts == (0.0, 1800.0, 1830.0, 2460.0)
    assert a.supply.rates == (150.0, 0.0, 60.0, 150.0)
    assert a.peak_backlog == pytest.approx(28_200, abs=1e-6)
    assert a.peak_backlog_at_s == 2460
    assert a.drained_at_s == pytest.approx(2460 + 564, abs=1.0)


def test_a_failover_slower_than_the_outage_means_no_mail_until_the_server_is_back():
    a = answer(question(servers=CHAIN, routing="failover",
                        timings=Timings(failover_s=900, failback_s=60)))  # fmt: skip
    assert a.supply.starts == (0.0, 1800.0, 2400.0)
    assert a.supply.rates == (150.0, 0.0, 150.0)
    assert a.peak_backlog == pytest.approx(60_000, abs=1e-6)


def test_in_a_pool_the_servers_left_deliver_through_the_failover_gap():
    # The same 30 s gap as above, in a pool: the secondary goes on at 60 msgs/s through
    # it, so 100/s offered against 60 for the 600 s outage and its 60 s failback: 26,400.
    a = answer(question(timings=Timings(detection_s=10, failover_s=30, failback_s=60)))
    assert a.supply.starts == (0.0, 1800.0, 2460.0)  # gap and outage at the same 60/s
    assert a.supply.rates == (150.0, 60.0, 150.0)
    assert a.peak_backlog == pytest.approx(40 * 660, abs=1e-6)


def test_a_standby_that_dies_changes_nothing():
    # Under failover the secondary carries no mail: its outage, however long its failover,
    # leaves the primary delivering as before (no gap, no backlog).
    for servers in (CHAIN, {"primary": 150.0, "middle": 20.0, "secondary": 60.0}):
        q = question(servers=servers, routing="failover", outage=Outage("secondary", 1800, 1200),
                     timings=Timings(failover_s=600, failback_s=60))  # fmt: skip
        a = answer(q)
        assert a.supply.rates == (150.0,)
        assert a.peak_backlog == 0
        assert a.met


def test_a_far_deadline_does_not_coarsen_the_model():
    # 360k messages over an hour at 100/s; 150 then 60 msgs/s for 10 min from 30 min:
    # 24,000 messages behind at 40 min, whatever the deadline.
    near = answer(question(deadline_s=HOUR))
    far = answer(question(deadline_s=29 * 86400.0))
    assert near.flow.t[1] - near.flow.t[0] == far.flow.t[1] - far.flow.t[0] == 1.0
    assert far.peak_backlog == near.peak_backlog == pytest.approx(24_000, abs=1e-6)
    assert far.completion_s == near.completion_s


def test_the_peak_offered_during_an_outage_includes_a_segment_end():
    # A ramp rising to 20/s at the window's end (3600 s): an outage from 3000 s to
    # 4200 s meets 20/s at 3600, not just the 16.7/s at its own start.
    ramp = fluid.Offered((fluid.Segment(0.0, HOUR, 0.0, 20.0),))
    assert ramp.max_rate(3000, 4200) == pytest.approx(20.0)
    assert ramp.max_rate(1800, 2400) == pytest.approx(2400 / HOUR * 20)


def test_the_higher_priority_stream_is_served_first_and_the_other_absorbs_the_backlog():
    groups = (StreamGroup(10, (("transactional", 0.1),)), StreamGroup(0, (("promotional", 0.9),)))
    a = answer(question(groups=groups))
    tx, promo = a.lateness[10], a.lateness[0]
    assert tx is not None
    assert promo is not None
    # transactional: 10/s, always under the 60/s left: never waits
    assert tx.max == 0.0
    assert float(a.flow.backlog[0].max()) == 0.0  # served first: flow's first group
    # promotional: 90/s arrive, 50/s go out during the outage; x s in, delivered when
    # 50 y = 90 x, so 0.8 x late up to the outage's end (x = 333.3): 266.7 s at most.
    assert promo.max == pytest.approx(600 * 0.8 / 1.8, abs=1.0)
    assert float(a.flow.backlog[1].max()) == pytest.approx(24_000, abs=1e-6)
    assert a.group_completion_s[10] == pytest.approx(HOUR, abs=0.1)


def test_headroom_per_server_is_its_share_of_the_peak_with_every_server_up():
    a = answer(question(headroom=0.5))
    assert a.loads["primary"].carried_msgs_per_s == pytest.approx(60)
    assert a.loads["secondary"].carried_msgs_per_s == pytest.approx(40)
    assert a.loads["primary"].headroom == pytest.approx(1 / 3)
    assert a.deadline_met
    assert not a.headroom_met
    # 100 msgs/s with half free takes 200: 50 more
    assert extra_for_headroom(question(headroom=0.5)) == pytest.approx(50)


def test_failover_routing_uses_the_first_server_alone_while_it_is_up():
    q = question(servers={"primary": 150.0, "secondary": 60.0}, routing="failover")
    a = answer(q)
    assert a.supply.rates == (150.0, 60.0, 150.0)
    assert a.loads["secondary"].carried_msgs_per_s == 0
    assert a.loads["secondary"].headroom == 1.0
    assert a.loads["primary"].headroom == pytest.approx(1 / 3)


def test_the_extra_rate_that_meets_a_missed_deadline():
    # Primary out from 20 to 50 min: backlog (40 - X) * 1800 at 50 min, drained at
    # (50 + X)/s in the 600 s left: 72,000 - 1,800 X <= 30,000 + 600 X, so X = 17.5.
    q = question(outage=Outage("primary", 1200, 1800), headroom=0.0)
    assert not answer(q).deadline_met
    extra = extra_needed(q)
    assert extra == pytest.approx(17.5, rel=2e-3)
    assert answer(q, extra).met
    assert not answer(q, 17.5 * 0.98).deadline_met
    assert extra_servers(q, extra) == {"primary": 1, "secondary": 1}
    assert extra_servers(q, 130.0) == {"primary": 2, "secondary": 3}


def test_the_extra_rate_meets_both_the_deadline_and_the_headroom():
    q = question(outage=Outage("primary", 1200, 1800), headroom=0.5)
    assert extra_needed(q) == pytest.approx(50)  # the headroom's 50 covers the deadline's 17.5


def test_no_extra_rate_helps_when_the_gap_runs_into_the_deadline():
    q = question(servers=CHAIN, routing="failover", outage=Outage("primary", 3000, 600),
                 timings=Timings(failover_s=600))  # fmt: skip
    assert not answer(q).deadline_met
    assert extra_needed(q) is None


def test_a_ramp_holds_the_campaign_and_peaks_where_asked():
    n, w = 1_000_000.0, 4 * HOUR
    peak = 2 * n / w
    ramp = fluid.Offered(
        (fluid.Segment(0, w / 4, 0, peak), fluid.Segment(w / 4, 3 * w / 4, peak, 0))
    )
    assert ramp.total == pytest.approx(n)
    assert ramp.peak_at_s() == w / 4
    t = np.linspace(0, w, 9)
    assert ramp.cumulative(t)[-1] == pytest.approx(n)
    # the first quarter holds a quarter of the messages (its triangle's share)
    assert ramp.cumulative(np.asarray([w / 4]))[0] == pytest.approx(n / 4)


def test_the_model_costs_steps_not_messages():
    small = answer(question(offered=flat(100 / 10_000, HOUR), servers={"a": 0.015}))
    large = answer(question(offered=flat(100 * 1000, HOUR), servers={"a": 150_000.0}))
    assert len(small.flow.t) == len(large.flow.t)
    assert large.question.offered.total == pytest.approx(360_000_000)


def test_lindley_closed_form_matches_the_recursion():
    rng = np.random.default_rng(3)
    arrivals = rng.uniform(0, 10, 500)
    capacity = rng.uniform(0, 10, 500)
    backlog, served = fluid.lindley(arrivals, capacity)
    b, expected = 0.0, []
    for a, c in zip(arrivals, capacity, strict=True):
        b = max(0.0, b + a - c)
        expected.append(b)
    assert backlog == pytest.approx(expected, abs=1e-9)
    assert np.all(served <= capacity + 1e-9)
    assert served.sum() + backlog[-1] == pytest.approx(arrivals.sum())


def test_a_days_long_outage_is_planned_to_its_drain():
    # Alone, the primary out from 30 min for 6 days: the 180,000 messages due after it
    # went wait for it, then go at 150/s: 1,200 s after it is back.
    q = question(servers={"primary": 150.0}, outage=Outage("primary", 1800, 6 * 24 * HOUR))
    a = answer(q)
    assert a.completion_s == pytest.approx(1800 + 6 * 24 * HOUR + 1200, abs=1.0)
    assert not a.deadline_met
    late = a.lateness[0]
    assert late is not None
    assert late.undelivered == 0
    assert late.max == pytest.approx(6 * 24 * HOUR, abs=2.0)  # the first one due in it


@pytest.mark.parametrize(
    ("segments", "at"),
    [
        ([(0, 100, 5, 5)], 50),  # flat: the middle
        ([(0, 30, 0, 10), (30, 70, 10, 0)], 30),  # a ramp up and down: the apex
        ([(0, 10, 0, 8), (10, 20, 8, 8), (30, 10, 8, 2)], 20),  # ramp into a flat peak
        ([(0, 10, 3, 3), (10, 10, 8, 8), (20, 10, 8, 8), (30, 5, 1, 1)], 20),  # two stages
        ([(0, 10, 8, 2), (10, 10, 2, 8)], 0),  # the first stretch at the peak
    ],
)
def test_the_peak_is_the_middle_of_the_first_stretch_at_the_highest_rate(segments, at):
    offered = fluid.Offered(tuple(fluid.Segment(*s) for s in segments))
    assert offered.peak_at_s() == at


def test_the_thinned_series_keeps_every_message_and_the_last_step():
    from loadtest.plan import series

    q = question(offered=flat(300, 10 * HOUR), deadline_s=10 * HOUR, step_s=1.0)
    a = answer(q)
    s = series.thinned(a, 1000)
    assert len(s.t_s) <= 1000
    assert s.t_s[-1] == a.flow.t[-1]  # a shorter last stretch, not dropped
    seconds = np.diff(np.concatenate(([0.0], s.t_s)))
    assert float((s.offered_msgs_per_s * seconds).sum()) == pytest.approx(300 * 10 * HOUR)
    assert float(s.backlogs[0].max()) <= a.peak_backlog


def test_the_highest_offered_rate_in_a_stretch():
    ramp = fluid.Offered((fluid.Segment(0, 100, 0, 10), fluid.Segment(100, 100, 10, 0)))
    assert ramp.max_rate(0, 50) == 5
    assert ramp.max_rate(50, 150) == 10  # the apex inside
    assert ramp.max_rate(150, 400) == 5  # past the end: nothing offered
