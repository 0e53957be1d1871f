"""The open-model schedule: intended times, shares, retries, lateness bookkeeping."""

from __future__ import annotations

import pytest

from loadtest.schedule import Dispatcher, Schedule, Stage, Ticket


def test_constant_rate_times():
    s = Schedule([Stage(10, 5)])
    assert s.total == 50
    assert [s.at(k) for k in (0, 1, 49)] == pytest.approx([0.0, 0.2, 9.8])
    with pytest.raises(IndexError):
        s.at(50)


def test_ramp_hold_and_drain_integrate_exactly():
    s = Schedule([Stage(10, 0, 20), Stage(5, 20), Stage(10, 20, 0)])
    # Ramp 0->20 over 10 s: 100 messages; hold: 100; drain 20->0 over 10 s: 100.
    assert s.total == 300
    assert s.due_by(10) == 100
    assert s.due_by(15) == 200
    assert s.at(100) == pytest.approx(10.0)
    assert s.at(200) == pytest.approx(15.0)
    # Within the ramp, C(t) = t^2: message 25 is due at 5 s.
    assert s.at(25) == pytest.approx(5.0)
    assert s.rate_at(5) == pytest.approx(10.0)
    assert s.rate_at(30) == 0.0
    times = [s.at(k) for k in range(s.total)]
    assert times == sorted(times)


def test_bad_stages_are_refused():
    with pytest.raises(ValueError, match="duration"):
        Stage(0, 5)
    with pytest.raises(ValueError, match="rates"):
        Stage(5, -1)
    with pytest.raises(ValueError, match="at least one stage"):
        Schedule([])


def test_dispatcher_waits_until_due_and_never_skips():
    d = Dispatcher(Schedule([Stage(1, 4)]))
    assert isinstance(d.take(0.0), Ticket)
    wait = d.take(0.0)
    assert wait == pytest.approx(0.25)
    # A stalled sender comes back late: every due message is still handed out, in order.
    late = [d.take(5.0) for _ in range(3)]
    assert [t.index for t in late] == [1, 2, 3]
    assert [t.intended for t in late] == pytest.approx([0.25, 0.5, 0.75])
    assert d.take(5.0) == pytest.approx(0.05)  # done with the schedule, 4 still in flight
    for t in late:
        d.done(t)
    d.done(Ticket(0, 1, 0.0, 0.0))
    assert d.take(5.0) is None
    assert d.pending() == 0


def test_workers_split_the_campaign_without_overlap():
    s = Schedule([Stage(10, 10)])
    shares = [Dispatcher(s, i, 3) for i in range(3)]
    assert sum(d.planned for d in shares) == s.total
    seen = []
    for d in shares:
        while isinstance(ticket := d.take(100.0), Ticket):
            seen.append(ticket.index)
            d.done(ticket)
    assert sorted(seen) == list(range(s.total))


def test_retries_come_back_when_due_before_later_fresh_messages():
    d = Dispatcher(Schedule([Stage(10, 1)]))
    first = d.take(0.0)
    d.retry(first, at=2.5, avoid="primary")
    assert d.take(1.0).index == 1
    assert d.take(2.0).index == 2
    again = d.take(2.6)
    assert (again.index, again.attempt, again.intended, again.due, again.avoid) == (
        0,
        2,
        0.0,
        2.5,
        "primary",
    )
    assert d.pending() == 7 + 3
