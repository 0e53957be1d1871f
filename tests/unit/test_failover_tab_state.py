"""What the Failover tab shows, from hand-made live state, faults and plans."""

from __future__ import annotations

import pytest

from loadtest.failover_tab import state
from loadtest.fault_event import FaultEvent
from loadtest.live_metrics import LiveState
from maildrill.records import AttemptRecord
from sinks.control_client import ActiveFault

T0 = 1_000_000.0


def row(server: str, outcome: str, attempt: int = 1, late_s: float = 0.0) -> tuple:
    values = dict.fromkeys(AttemptRecord.header(), "")
    values.update(server=server, outcome=outcome, attempt=str(attempt), final="1",
                  code="250" if outcome == "accepted" else "", intended=str(T0),
                  start=str(T0 + late_s), end=str(T0 + late_s + 0.01))  # fmt: skip
    return tuple(values[name] for name in AttemptRecord.header())


def fault(fault_id: str, state_: str, origin: str = "command", at: float = 5.0) -> ActiveFault:
    return ActiveFault(id=fault_id, kind="down", origin=origin, probability=1.0, params={},
                       state=state_, start_at=T0 + at, started=T0 + at, until=T0 + at + 10,
                       ended=T0 + at + 4 if state_ == "ended" else None)  # fmt: skip


def test_the_worst_circuit_any_sender_sees_is_the_servers():
    counts = {("p", "closed"): 1, ("p", "open"): 1, ("s", "closed"): 2, ("h", "half_open"): 1}
    assert state.circuit_of(counts, "p") == ("open", {"open": 1, "half_open": 0, "closed": 1})
    assert state.circuit_of(counts, "s")[0] == "closed"
    assert state.circuit_of(counts, "h")[0] == "half_open"
    assert state.circuit_of(counts, "nobody")[0] == "unknown"


def test_rates_are_over_the_last_seconds_of_polls():
    rates = state.Rates()
    assert rates.update(0.0, {"p": (0, 0)}) == {"p": (0.0, 0.0)}
    assert rates.update(1.0, {"p": (10, 1)}) == {"p": (10.0, 1.0)}
    assert rates.update(2.0, {"p": (30, 1)}) == {"p": (15.0, 0.5)}
    # older than the window: the rate is over the last RATE_WINDOW_S only
    got = rates.update(10.0, {"p": (30, 1)})["p"]
    assert got == (pytest.approx(0.0), pytest.approx(0.0))


def test_each_server_row_counts_what_was_journaled():
    live = LiveState()
    live.reset(["primary", "secondary"], planned=5)
    live.add_rows([row("primary", "accepted"), row("primary", "refused"),
                   row("secondary", "accepted", 1, 0.5), row("secondary", "timeout")])  # fmt: skip
    live.circuits["w1"] = {"primary": "open", "secondary": "closed"}
    rows = state.servers(live, state.Rates(), 1.0, ["primary"])
    assert [(r["name"], r["accepted"], r["failed"], r["circuit"], r["local"]) for r in rows] == [
        ("primary", 1, 1, "open", True), ("secondary", 1, 1, "closed", False)
    ]  # fmt: skip
    assert rows[0]["last_code"] is None  # the refusal came last
    assert rows[1]["last_code"] is None
    progress = state.campaign(live)
    assert (progress["planned"], progress["finished"]) == (5, 4)
    assert progress["lateness_p95_ms"] == pytest.approx(500, rel=0.01)


def test_the_timeline_joins_the_plan_and_what_the_sinks_report():
    planned = [FaultEvent(at=5, target="primary", kind="down", duration=10),
               FaultEvent(at=40, target="secondary", kind="down", duration=5)]  # fmt: skip
    reported = {"primary": [fault("down-1", "ended", "schedule"), fault("down-2", "active", at=20)]}
    rows = state.timeline(planned, reported, T0, T0 + 25)
    got = [(r["server"], r["id"], r["origin"], r["state"], r["start_s"]) for r in rows]
    assert got == [
        ("primary", "down-2", "command", "active", 20.0),  # in force first
        ("secondary", "", "schedule", "planned", 40),  # not reported yet: the plan's
        ("primary", "down-1", "schedule", "done", 5.0),  # the plan's first, as the sink has it
    ]  # fmt: skip


def test_slos_the_senders_rows_measure_are_judged_live_the_others_at_the_end():
    live = LiveState()
    live.reset(["primary"], planned=3)
    live.add_rows([row("primary", "accepted"), row("primary", "accepted", 1, 0.2),
                   row("primary", "refused")])  # fmt: skip
    rules = ["failed == 0", "p95_lateness_ms <= 1000", "lost == 0", "p95_latency_ms <= 5"]
    got = [(s["rule"], s["status"], s["value"]) for s in state.slo_status(rules, live)]
    assert got == [
        ("failed == 0", "failing", 1.0),  # the refusal was its message's last word
        ("p95_lateness_ms <= 1000", "passing", pytest.approx(200, rel=0.01)),
        ("lost == 0", "at the end", None),  # needs the sinks' receipts
        ("p95_latency_ms <= 5", "failing", pytest.approx(10, rel=0.01)),  # 10 ms each
    ]


@pytest.mark.parametrize(
    ("origin", "fault_state", "refused"),
    [
        ("schedule", "pending", True),  # sent ahead, not started: the drill checks it starts
        ("schedule", "active", False),
        ("command", "pending", False),  # started from the tab: the tab's to stop
        ("command", "active", False),
    ],
)
def test_the_tab_stops_no_fault_the_drill_waits_to_see_start(origin, fault_state, refused):
    fault = ActiveFault(id="f1", kind="servfail", origin=origin, probability=1.0, params={},
                        state=fault_state, start_at=None, started=None, until=None)  # fmt: skip
    why = state.stop_refusal(fault)
    assert (why is not None) is refused
    if why is not None:
        assert why.startswith("f1 was scheduled ahead and has not started: stopping it now")
        assert "\n" not in why
