"""Hand-built run directories with known answers, for the report and capacity tests.

Every time is fixed (T0 plus known offsets) so rendered reports are byte-for-byte stable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from loadtest.analysis import partitions, summary
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Summary
from maildrill.journal import RowWriter
from maildrill.records import AttemptRecord, FaultRecord, ReceiptRecord, Record

T0 = 1_800_000_000.0


def write_csv(path: Path, record: type[Record], records: Iterable[Record], torn: str = ""):
    """A journal as its writer lays it out, then `torn` (a line cut mid-write)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = RowWriter(f)
        writer.writerow(record.header())
        for r in records:
            writer.writerow(r.row())
        f.write(torn)


class RunBuilder:
    """Collects attempts, receipts and faults; `write` lays out a run directory."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.attempts: list[AttemptRecord] = []
        self.receipts: dict[str, list[ReceiptRecord]] = {}
        self.faults: dict[str, list[FaultRecord]] = {}
        self.sessions: dict[str, int] = {}

    def attempt(
        self,
        k: int,
        server: str,
        intended: float,
        start: float,
        end: float,
        outcome: str = "accepted",
        attempt: int = 1,
        code: int | None = 250,
        enhanced: str = "2.0.0",
        phase: str = "dot",
        final: bool = True,
        size: int = 10_000,
        new_connection: bool = False,
        stream: str = "promotional",
    ) -> None:
        self.attempts.append(
            AttemptRecord(
                run_id=self.run_id, worker="local", msg_id=f"{self.run_id}-{k}",
                stream=stream, attempt=attempt, server=server, intended=T0 + intended,
                due=T0 + start, start=T0 + start, connected=T0 + start, end=T0 + end,
                phase=phase, code=code, enhanced=enhanced, outcome=outcome, bytes=size,
                recipients=1, recipients_refused=0, new_connection=new_connection,
                retry=attempt > 1, failover=server != "primary", final=final,
                maybe_duplicate=False, error="",
            )
        )  # fmt: skip

    def receipt(self, k: int, sink: str, at: float, session: int = 1, size: int = 10_000) -> None:
        self.receipts.setdefault(sink, []).append(
            ReceiptRecord(
                time=T0 + at, sink=sink, worker=0, session=f"{sink}.{session}",
                peer="127.0.0.1", msg_id=f"{self.run_id}-{k}", message_id="",
                mail_from="news@example.com", rcpt_count=1, size=size, outcome="accepted",
                queue_id=f"{sink}.{session}.{k}", helo="maildrill.test",
            )
        )  # fmt: skip

    def fault(self, sink: str, kind: str, state: str, at: float) -> None:
        self.faults.setdefault(sink, []).append(
            FaultRecord(
                time=T0 + at, sink=sink, worker=0, kind=kind, state=state,
                fault_id=f"{kind}-1", origin="command", params="{}",
            )
        )  # fmt: skip

    def write(
        self,
        run_dir: Path,
        scenario: str,
        planned: int,
        harness: dict[str, object] | None = None,
        torn: dict[str, str] | None = None,
    ) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        torn = torn or {}
        (run_dir / "scenario.yaml").write_text(scenario)
        run = {"run_id": self.run_id, "t0": T0, "planned": planned, "workers": []}
        (run_dir / "run.json").write_text(json.dumps(run))
        if harness is not None:
            (run_dir / "harness.json").write_text(json.dumps(harness))
        name = "attempts.csv"
        write_csv(run_dir / name, AttemptRecord, self.attempts, torn.get(name, ""))
        for sink, rows in self.receipts.items():
            name = f"receipts-{sink}.csv"
            write_csv(run_dir / name, ReceiptRecord, rows, torn.get(name, ""))
        for sink in self.receipts.keys() | self.faults.keys():
            write_csv(run_dir / f"faults-{sink}.csv", FaultRecord, self.faults.get(sink, []))
        return run_dir


DRILL_SCENARIO = """\
name: hand-drill
description: hand-built primary-down drill
servers:
  - {name: primary, priority: 10, local: true, host: 127.0.0.1, port: 2525}
  - {name: secondary, priority: 20, local: true, host: 127.0.0.1, port: 2526}
routing: {policy: failover, circuit: {threshold: 1, cooldown_s: 2}}
campaign:
  seed: 1
  streams: [{name: promotional, size_median: 10000, size_sigma: 0.1}]
  schedule:
    - {duration_s: 10, rate: 4}
  drain_s: 2
users: 4
faults:
  - {at: 4, target: primary, kind: down, duration: 3}
slo:
  - lost == 0
  - duplicates == 0
  - failover_s <= 1
  - p95_latency_ms <= 15
"""

DRILL_HARNESS = {
    "partial": False,
    "interrupted_by": None,
    "locust_exit_code": 0,
    "sink_deaths": [],
    "faults": [{"at_s": 4.0, "target": "primary", "kind": "down", "status": "started down-1"}],
    "events": [
        {
            "time": T0 - 1.5,
            "event": "sinks_ready",
            "sinks": {"primary": ["127.0.0.1", 2525], "secondary": ["127.0.0.1", 2526]},
        },
        {
            "time": T0 + 4.0,
            "event": "fault_sent",
            "target": "primary",
            "kind": "down",
            "at_s": 4.0,
            "status": "started down-1",
        },
    ],
    "finished_at": T0 + 13.0,
}


def drill(run_dir: Path) -> Path:
    """40 messages at 4/s over 10 s; the primary is down from 4.0 s to 7.0 s.

    - primary: 10 ms per message; secondary: 20 ms.
    - message 16 (intended 4.0): refused by the primary (ends 4.2), accepted by the
      secondary (ends 4.5): detection 0.2 s, failover 0.5 s. Messages 17-27 go to the
      secondary; from 7.0 s the primary again (failback at 7.01 s: 0.01 s).
    - message 30: 421 4.7.0 on the primary, accepted on the retry 1 s later.
    - message 5 received twice (a duplicate); message 35 dropped after the dot, counted
      failed by the client, yet received (a phantom).
    - receipts-secondary.csv ends in a torn line (skipped, reported): the run finished
      cleanly, so the file was cut short and `lost == 0` cannot pass (unverified).
    """
    b = RunBuilder("hand-drill")
    for k in range(40):
        t = k * 0.25
        if k == 16:
            b.attempt(k, "primary", t, t + 0.19, t + 0.2, outcome="refused", code=None,
                      enhanced="", phase="connect", final=False, new_connection=True)  # fmt: skip
            b.attempt(k, "secondary", t, t + 0.48, t + 0.5, attempt=2, new_connection=True)
            b.receipt(k, "secondary", t + 0.499)
        elif 16 < k < 28:
            b.attempt(k, "secondary", t, t, t + 0.02)
            b.receipt(k, "secondary", t + 0.019)
        elif k == 30:
            b.attempt(k, "primary", t, t, t + 0.01, outcome="deferred", code=421,
                      enhanced="4.7.0", phase="mail", final=False)  # fmt: skip
            b.attempt(k, "primary", t, t + 1.0, t + 1.01, attempt=2)
            b.receipt(k, "primary", t + 1.009, session=2)
        elif k == 35:
            b.attempt(k, "primary", t, t, t + 0.01, outcome="dropped", code=None, enhanced="",
                      phase="dot")  # fmt: skip
            b.receipt(k, "primary", t + 0.009, session=2)
        else:
            b.attempt(k, "primary", t, t, t + 0.01, new_connection=k in (0, 28))
            b.receipt(k, "primary", t + 0.009, session=1 if k < 16 else 2)
        if k == 5:
            b.receipt(k, "primary", t + 0.5, session=1)
    b.fault("primary", "down", "start", 4.0)
    b.fault("primary", "down", "stop", 7.0)
    torn = {"receipts-secondary.csv": f"{T0 + 9.9:.6f},secondary,0,secondary.9,127.0"}
    return b.write(run_dir, DRILL_SCENARIO, planned=40, harness=DRILL_HARNESS, torn=torn)


STEP_SCENARIO = """\
name: hand-steps
description: hand-built step load 10 -> 50 msgs/s
servers:
  - {name: primary, priority: 10, local: true, host: 127.0.0.1, port: 2525}
routing: {policy: failover}
campaign:
  seed: 1
  streams: [{name: promotional, size_median: 10000, size_sigma: 0.1}]
  schedule:
    - {duration_s: 2, rate: 0, to_rate: 10}
    - {duration_s: 5, rate: 10}
    - {duration_s: 5, rate: 20}
    - {duration_s: 5, rate: 30}
    - {duration_s: 5, rate: 40}
    - {duration_s: 5, rate: 50}
  drain_s: 2
users: 10
slo: [p95_latency_ms <= 250]
"""
STEP_RATES = (10, 20, 30, 40, 50)
STEP_RAMP_S = 2.0  # the ramp before the steps is not a step


def steps(run_dir: Path, scenario: str = STEP_SCENARIO) -> Path:
    """A step load whose answer is known (p95 SLO 250 ms):

    - 10, 20, 30 msgs/s: every message accepted in 10 ms: stable.
    - 40 msgs/s: every 10th message rejected (550 5.7.1): 90 % accepted, not stable;
      delivered 180 / 5 s = 36 msgs/s.
    - 50 msgs/s: every message accepted, but in 300 ms: p95 over the SLO, not stable;
      delivered (ends inside the step) 235 / 5 s = 47 msgs/s.
    Knee 30 msgs/s; max stable throughput 36 msgs/s (47 without the SLO, knee 50).
    """
    b = RunBuilder("hand-steps")
    k = 0
    for j in range(10):  # the ramp: 10 messages in 2 s, all fine
        t = j * 0.2
        b.attempt(k, "primary", t, t, t + 0.01)
        b.receipt(k, "primary", t + 0.009)
        k += 1
    start = STEP_RAMP_S
    for rate in STEP_RATES:
        for j in range(rate * 5):
            t = start + j / rate
            if rate == 40 and j % 10 == 9:
                b.attempt(k, "primary", t, t, t + 0.01, outcome="rejected", code=550,
                          enhanced="5.7.1", phase="rcpt")  # fmt: skip
            else:
                latency = 0.3 if rate == 50 else 0.01
                b.attempt(k, "primary", t, t, t + latency)
                b.receipt(k, "primary", t + latency - 0.001)
            k += 1
        start += 5.0
    harness = {"partial": False, "interrupted_by": None, "locust_exit_code": 0,
               "sink_deaths": [], "faults": [], "events": [], "finished_at": T0 + 30}  # fmt: skip
    return b.write(run_dir, scenario, planned=k, harness=harness)


def summarised(run_dir: Path) -> Summary:
    """The run's summary, held whole; checked to be the very same read a partition of its
    messages at a time (three partitions, as a run too big to hold whole is read)."""
    made = summary.summarise(RunDir.load(run_dir))
    split = partitions.split(run_dir, 3)
    if split is not None:
        with split:
            shared = summary.summarise(RunDir.load(run_dir, split=split))
        assert summary.as_json(shared) == summary.as_json(made)
    return made
