"""What the Failover tab shows, as plain data: built from the live state (the rows the
attempts journal gets, the circuits each sender sees: loadtest.live_metrics), the faults
the sinks report and the scenario's plan. Pure: no Locust, no HTTP, no clock of its own,
so it is tested on hand-made inputs; loadtest.failover_tab.routes does the I/O.

The circuit of a server as "the senders" see it: with several sender processes (Locust
workers) each has its own; the tab shows the worst (open, then half-open, then closed) and
how many see each.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.analysis.slo import OPS, parse_slo
from loadtest.fault_event import FaultEvent
from loadtest.live_metrics import LiveState, percentile_ms
from loadtest.routing import CircuitState
from sinks.control_client import ActiveFault

# The accepted and failed rates are over the last few seconds of polls: steady enough to
# read, short enough to see a failover as it happens.
RATE_WINDOW_S = 3.0
_WORST_FIRST = (CircuitState.OPEN.value, CircuitState.HALF_OPEN.value, CircuitState.CLOSED.value)
DONE = ("ended", "cancelled")


@dataclass
class Rates:
    """Per server, accepted and failed attempts per second over the last RATE_WINDOW_S,
    from the running counts seen at each poll."""

    seen: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)

    def update(
        self, now: float, counts: Mapping[str, tuple[int, int]]
    ) -> dict[str, tuple[float, float]]:
        out = {}
        for server, (accepted, failed) in counts.items():
            history = self.seen.setdefault(server, deque())
            history.append((now, accepted, failed))
            while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
                history.popleft()
            t, a, f = history[0]
            span = now - t
            out[server] = ((accepted - a) / span, (failed - f) / span) if span > 0 else (0.0, 0.0)
        return out


def circuit_of(counts: Mapping[tuple[str, str], int], server: str) -> tuple[str, dict[str, int]]:
    """The worst state any sender sees for `server`, and how many see each; "unknown"
    before any sender reported."""
    seen = {state: counts.get((server, state), 0) for state in _WORST_FIRST}
    worst = next((state for state in _WORST_FIRST if seen[state]), "unknown")
    return worst, seen


def servers(
    live: LiveState, rates: Rates, now: float, local: Sequence[str]
) -> list[dict[str, Any]]:
    """A row per server: circuit, rates, totals, the last reply code."""
    names = list(live.servers) or sorted({s for s, _ in live.attempts})
    totals = {
        name: (
            live.attempts.get((name, "accepted"), 0),
            sum(
                n
                for (s, outcome), n in live.attempts.items()
                if s == name and outcome != "accepted"
            ),
        )
        for name in names
    }
    per_s = rates.update(now, totals)
    circuits = live.circuit_counts()
    rows = []
    for name in names:
        worst, seen = circuit_of(circuits, name)
        accepted_s, failed_s = per_s[name]
        rows.append(
            {
                "name": name,
                "local": name in local,
                "circuit": worst,
                "circuits": seen,
                "accepted": totals[name][0],
                "failed": totals[name][1],
                "accepted_per_s": round(accepted_s, 1),
                "failed_per_s": round(failed_s, 1),
                "last_code": live.last_code.get(name),
            }
        )
    return rows


def _at(epoch: float | None, t0: float) -> float | None:
    return None if epoch is None or not t0 else round(epoch - t0, 3)


def timeline(
    planned: Sequence[FaultEvent],
    reported: Mapping[str, Sequence[ActiveFault]],
    t0: float,
    now: float,
) -> list[dict[str, Any]]:
    """Every fault: the scenario's plan (planned until a sink reports it) and what the sinks
    report (pending, active, then done: ended, cancelled or failed). Times in seconds from
    the campaign's start (t0; none before it starts)."""
    rows: list[dict[str, Any]] = []
    claimed: set[tuple[str, str, float]] = set()
    for server, faults in reported.items():
        for f in faults:
            state = "done" if f.state in DONE or f.state.startswith("failed") else f.state
            rows.append(
                {
                    "server": server,
                    "id": f.id,
                    "kind": f.kind,
                    "origin": f.origin,
                    "state": state,
                    "detail": f.state,
                    "start_s": _at(f.started if f.started is not None else f.start_at, t0),
                    "end_s": _at(f.ended if f.ended is not None else f.until, t0),
                }
            )
            if f.origin == "schedule" and t0:
                claimed.add((server, f.kind, round(f.start_at - t0)))
    for event in planned:
        if (event.target, event.kind, round(event.at)) in claimed:
            continue
        due = t0 + event.at if t0 else None
        over = due is not None and event.duration is not None and now >= due + event.duration
        rows.append(
            {
                "server": event.target,
                "id": "",
                "kind": event.kind,
                "origin": "schedule",
                "state": "done" if over else "planned",
                "detail": "played by the sink's own timeline" if over else "planned",
                "start_s": event.at,
                "end_s": None if event.duration is None else event.at + event.duration,
            }
        )
    order = {"active": 0, "pending": 1, "planned": 2, "done": 3}
    rows.sort(
        key=lambda r: (order.get(r["state"], 4), r["start_s"] if r["start_s"] is not None else 0.0)
    )
    return rows


def campaign(live: LiveState) -> dict[str, Any]:
    """Planned and finished messages, the lateness p95 so far, whether the load ended."""
    return {
        "planned": live.planned,
        "finished": live.finished,
        "lateness_p95_ms": live.lateness_p95_ms(),
        "ended": live.ended,
    }


def live_values(live: LiveState) -> dict[str, float | None]:
    """The SLO metrics the senders' own rows measure as the run goes; the others (lost,
    duplicates, failover timings, ...) need the sinks' journals and the whole run."""
    return {
        "failed": float(live.failed_messages),
        "p95_latency_ms": percentile_ms(live.latency_all, 95),
        "p99_latency_ms": percentile_ms(live.latency_all, 99),
        "p95_lateness_ms": percentile_ms(live.lateness, 95),
        "p99_lateness_ms": percentile_ms(live.lateness, 99),
    }


def slo_status(rules: Sequence[str], live: LiveState) -> list[dict[str, Any]]:
    """Each rule: `passing` or `failing` so far where the live rows measure it, else
    `at the end` (judged on the journals when the run ends, as the report does)."""
    values = live_values(live)
    out = []
    for rule in rules:
        metric, op, limit = parse_slo(rule)
        value = values.get(metric)
        status = (
            "at the end" if value is None else "passing" if OPS[op](value, limit) else "failing"
        )
        out.append({"rule": rule, "value": value, "status": status})
    return out


COMMAND = "command"  # the origin of a fault started from the tab (or any control call)


def stop_refusal(fault: ActiveFault) -> str | None:
    """Why the tab will not stop `fault` now, in one line; None when it may. A fault sent
    ahead that has not started stays: the drill checks that each fault it planned started,
    so one cancelled before its time fails the run. In force, or started here: it stops."""
    if fault.state == "pending" and fault.origin != COMMAND:
        return (
            f"{fault.id} was scheduled ahead and has not started: stopping it now would fail "
            "the run (the drill checks that each fault it planned started); stop it once it "
            "is active"
        )
    return None
