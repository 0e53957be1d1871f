"""The run as the senders see it, live, in the Locust process that journals the attempts.

`LiveState` is fed the very rows the attempts journal gets (`AttemptRecord.row()`: the
local runner's own, or the rows workers ship to the master), so what it counts and what
the analysis recounts from attempts.csv cannot differ; it keeps counts only (no rows), so
a long run costs no memory. The circuits are not in the rows: each sender process's
routing policy (`Policy.states()`) is read where it lives, by the local runner at the
moment of asking, and sent by each worker to the master (`loadtest.live_glue`, which also
feeds the rows). Pure: no Locust, no Prometheus; `loadtest.sender_metrics` exposes this
state, and any other live view (a web UI tab) can read the same.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest.routing import CircuitState
from maildrill.records import AttemptRecord

# Seconds: SMTP service times run from milliseconds (a sink on loopback) to a minute (a
# tarpit, a hang cut by its timeout). Prometheus's `le` bounds are inclusive.
BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

_COLUMN = {name: i for i, name in enumerate(AttemptRecord.header())}
_SERVER, _OUTCOME, _CODE, _FINAL = (_COLUMN[c] for c in ("server", "outcome", "code", "final"))
_ATTEMPT, _START, _INTENDED, _END = (_COLUMN[c] for c in ("attempt", "start", "intended", "end"))
# The analysis's HDR range (loadtest.analysis.histograms, not imported: it brings pandas
# into every sender process): 1 µs to an hour, 3 significant digits.
LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3


@dataclass
class Histogram:
    """Counts per bucket (upper bounds `bounds`, then +Inf) and the sum of what was seen."""

    bounds: tuple[float, ...] = BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count at or below it), +Inf last, as a histogram is exposed."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def _hdr() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _micros(seconds: float) -> int:
    return int(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))


def percentile_ms(h: HdrHistogram, p: float) -> float | None:
    """The `p` percentile in ms, to 0.1 (None: nothing recorded yet)."""
    if not h.get_total_count():
        return None
    return round(float(h.get_value_at_percentile(p)) / 1000.0, 1)


@dataclass
class LiveState:
    """Counts of the attempts journaled so far, and the circuits each sender sees."""

    servers: list[str] = field(default_factory=list)  # the scenario's, in its order
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (server, outcome)
    latency: dict[str, Histogram] = field(default_factory=dict)  # end - start, accepted
    response: dict[str, Histogram] = field(default_factory=dict)  # end - intended, accepted
    last_code: dict[str, int | None] = field(default_factory=dict)  # by server
    finished: int = 0  # messages whose last attempt was journaled (`final`)
    planned: int = 0
    ended: bool = False  # the load stopped: every row has come in
    # The circuits of each sender process (a Locust worker's id, or "local") by server.
    circuits: dict[str, dict[str, str]] = field(default_factory=dict)
    read_local: Callable[[], dict[str, str]] | None = None  # the local runner's, when asked
    # In µs, as the analysis counts them: `start - intended` of first attempts (lateness_ms)
    # and `end - start` of accepted ones (latency_ms), for the live SLO status.
    lateness: HdrHistogram = field(default_factory=_hdr)
    latency_all: HdrHistogram = field(default_factory=_hdr)
    failed_messages: int = 0  # finished with a last word other than accepted

    def reset(self, servers: Sequence[str], planned: int) -> None:
        """A new run (test_start): nothing counted yet."""
        self.servers = list(servers)
        self.attempts.clear()
        self.latency.clear()
        self.response.clear()
        self.last_code.clear()
        self.circuits.clear()
        self.finished = 0
        self.planned = planned
        self.ended = False
        self.lateness.reset()
        self.latency_all.reset()
        self.failed_messages = 0

    def add(self, row: Sequence[Any]) -> None:
        """One attempts-journal row, as written (epochs as text, flags as 0/1).

        Per attempt in the process that sends: each cell is read once, and a server's
        histograms are made the first time it is seen, not built and thrown away per row."""
        server = str(row[_SERVER])
        outcome = str(row[_OUTCOME])
        self.attempts[server, outcome] += 1
        code = row[_CODE]
        self.last_code[server] = None if code in (None, "") else int(code)
        if int(row[_FINAL] or 0):
            self.finished += 1
            self.failed_messages += outcome != "accepted"
        start = float(row[_START])
        intended = float(row[_INTENDED])
        if int(row[_ATTEMPT] or 0) == 1:
            self.lateness.record_value(_micros(start - intended))
        if outcome == "accepted":
            end = float(row[_END])
            latency = self.latency.get(server)
            if latency is None:
                latency = self.latency[server] = Histogram()
            response = self.response.get(server)
            if response is None:
                response = self.response[server] = Histogram()
            latency.observe(end - start)
            self.latency_all.record_value(_micros(end - start))
            response.observe(max(0.0, end - intended))

    def add_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.add(row)

    def lateness_p95_ms(self) -> float | None:
        """The p95 lateness of the messages sent so far (None: none yet)."""
        return percentile_ms(self.lateness, 95)

    def circuit_counts(self) -> dict[tuple[str, str], int]:
        """(server, state) -> how many sender processes see that server's circuit so; every
        state of every known server is present (0 when none), as Prometheus likes it."""
        every = dict(self.circuits)
        if self.read_local is not None:
            every["local"] = self.read_local()
        servers = list(self.servers)
        servers += sorted({s for states in every.values() for s in states} - set(servers))
        counts = {(s, state.value): 0 for s in servers for state in CircuitState}
        for states in every.values():
            for server, state in states.items():
                counts[server, state] += 1
        return counts
