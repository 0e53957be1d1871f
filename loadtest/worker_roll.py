"""The Locust master's roll of its workers: who is expected, who finished its share, who
flushed its last journal rows, who was lost and when. Pure: the master feeds it what it
sees (loadtest.locust_glue), and writes `record()` to the run directory as workers.json,
which the orchestrator reads to name lost workers in harness.json (`workers_lost`).

A worker on another host is no child of the orchestrator: when it dies, only the master
sees it, by Locust's heartbeats (a worker silent for about 3 s is `missing`) or by its
leaving. Lost is a worker that went missing or left before its share was done, or, once
the master is stopping, before its final flush arrived. Its rows that did arrive stay in
the journal; its share's rest is never sent, which the summary counts as `not_sent`.

The final flush: every worker ships its last rows and then says how many rows it shipped
in all (`flushed`). Locust's channel is one ordered TCP stream per worker, so by then all
of them are in; a count that differs says rows were dropped on the way (a reconnect). A
worker still connected whose flush never comes is lost too (`settle`): its last rows are
not in the journal, and only the roll can say so.

A worker missing only for a while (a CPU-starved host misses a heartbeat or two) is lost
when it goes missing, so the run does not wait on it, but `recovered` when its heartbeats
return: it stays lost only if its final count then differs from what arrived. When it
first went missing stays in the roll (`missing_at_s`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRESENT, MISSING = "present", "missing"
NO_HEARTBEAT = "no heartbeat"
WORKERS_FILE = "workers.json"  # in the run directory, written by the master


@dataclass
class WorkerState:
    rows: int = 0  # journal rows received from it
    shipped: int | None = None  # rows it says it shipped in all (its final flush)
    done: bool = False  # its share of the campaign finished
    lost_at_s: float | None = None  # seconds from t0 when it was seen lost
    why: str = ""  # why it was lost, or what it refused
    missing_at_s: float | None = None  # when it first missed its heartbeats, if ever
    recovered_at_s: float | None = None  # when its heartbeats last came back


class WorkerRoll:
    def __init__(self, workers: list[str], t0: float) -> None:
        self.t0 = t0
        self.workers = {w: WorkerState() for w in workers}

    def received(self, worker: str, rows: int) -> None:
        if worker in self.workers:
            self.workers[worker].rows += rows

    def finished(self, worker: str) -> None:
        if worker in self.workers:
            self.workers[worker].done = True

    def flushed(self, worker: str, shipped: int) -> None:
        if worker in self.workers:
            self.workers[worker].shipped = shipped

    def refused(self, worker: str, why: str) -> None:
        """The worker would not run the plan (loadtest.locust_glue): lost from the start."""
        if worker in self.workers:
            self.workers[worker].why = f"refused the plan: {why}"

    def check(self, now: float, seen: Mapping[str, str], stopping: bool) -> list[str]:
        """The workers newly lost: `seen` is each worker the master still knows, PRESENT or
        MISSING (no heartbeat); one it no longer knows has left."""
        lost = []
        for worker, state in self.workers.items():
            if state.lost_at_s is not None:
                continue
            status = seen.get(worker)
            if status == PRESENT:
                continue
            if stopping:
                if state.shipped is not None:
                    continue  # flushed, then left as told
            elif state.done:
                continue  # its share is over: nothing of it is missing
            state.lost_at_s = round(now - self.t0, 3)
            if status == MISSING and state.missing_at_s is None:
                state.missing_at_s = state.lost_at_s
            if not state.why:
                state.why = NO_HEARTBEAT if status == MISSING else "left"
            lost.append(worker)
        return lost

    def recover(self, now: float, seen: Mapping[str, str]) -> list[str]:
        """The workers lost for a missed heartbeat whose heartbeats came back: no longer
        lost (for now: `settle` decides by their final count)."""
        back = []
        for worker, state in self.workers.items():
            if state.lost_at_s is None or state.why != NO_HEARTBEAT:
                continue
            if seen.get(worker) == PRESENT:
                state.lost_at_s, state.why = None, ""
                state.recovered_at_s = round(now - self.t0, 3)
                back.append(worker)
        return back

    def settle(self, now: float, flush_wait_s: float) -> list[str]:
        """The master waited `flush_wait_s` for final flushes: the workers newly lost at
        the end, one whose flush never came, and one that went missing and whose final count
        then differs from what arrived (its heartbeats came back, its rows did not)."""
        lost = []
        for worker, state in self.workers.items():
            if state.lost_at_s is not None:
                continue
            if state.shipped is None:
                state.lost_at_s = round(now - self.t0, 3)
                state.why = f"no final flush within {flush_wait_s:g} s"
            elif state.missing_at_s is not None and state.shipped != state.rows:
                state.lost_at_s = state.missing_at_s
                state.why = (f"{NO_HEARTBEAT} at {state.missing_at_s:g} s; "
                             f"{state.shipped - state.rows} rows never arrived")  # fmt: skip
            else:
                continue
            lost.append(worker)
        return lost

    def all_finished(self) -> bool:
        """Every worker finished its share or was lost: nothing more will be sent."""
        return bool(self.workers) and all(
            s.done or s.lost_at_s is not None for s in self.workers.values()
        )

    def awaiting_flush(self) -> list[str]:
        """Workers whose final flush has not come, and that are not lost."""
        return [w for w, s in self.workers.items() if s.shipped is None and s.lost_at_s is None]

    def record(self) -> dict[str, Any]:
        """workers.json: per worker, rows received and shipped, done, lost and why, when
        it first went missing and when it came back."""
        return {
            "workers": {
                worker: {
                    "rows": s.rows,
                    "shipped": s.shipped,
                    "rows_missing": max(s.shipped - s.rows, 0) if s.shipped is not None else None,
                    "done": s.done,
                    "lost_at_s": s.lost_at_s,
                    "why": s.why,
                    "missing_at_s": s.missing_at_s,
                    "recovered_at_s": s.recovered_at_s,
                }
                for worker, s in self.workers.items()
            }
        }
