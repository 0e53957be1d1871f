"""`maildrill sinks SCENARIO`: the scenario's local sinks for another sender, playing the
scenario's sink faults on time, and a run directory `maildrill report` reads.

Another sender (a user's own platform) sends to the sinks while the faults happen. The
timeline starts when every sink listens, or at `--start-at` (epoch seconds or ISO-8601);
each fault goes to its sink ahead, with its epoch start, and the sink starts and ends it
on its own clock (`sinks.host`); a DNS fault (`target: dns`) goes to the run's DNS
server, served in this process, which plays it on the same clock (`maildrill.dns.board`)
and journals it in faults-dns.csv. Postfix faults are not played: `maildrill sinks` starts
no Postfix.

The directory (docs/run-directory.md, "A run without the sender's journal"): the sinks'
journals, `scenario.yaml` (real ports filled in, secrets redacted) once the sinks listen,
and, once they have stopped, `harness.json` in the shape `maildrill run` writes, with
`sender: external` and `t0` (the timeline's start).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from loadtest.analysis.rundir import EXTERNAL, journal_manifest
from loadtest.dns_run import write_run_zones
from loadtest.orchestrate import redact
from loadtest.runlog import RunLog
from loadtest.scenario import Scenario
from loadtest.sink_fleet import with_run_dns
from loadtest.timeline import DnsServerFault, Planned, SentAhead, SinkFault, Timeline, plan
from maildrill.control_auth import control_token
from maildrill.dns.board import FaultBoard
from maildrill.dns.control import ControlServer as DnsControl
from maildrill.dns.files import load_zones
from maildrill.dns.journals import keep_journals
from maildrill.dns.server import DnsServer
from maildrill.numbers import number_problem
from sinks.config import FaultSpec, SinksFile
from sinks.runner import serve

# The furthest ahead --start-at may be: a sink process waiting longer is more likely a
# mistyped date than a plan.
MAX_START_AHEAD_S = 24 * 3600


def parse_start_at(text: str, now: float) -> float:
    """--start-at as epoch seconds: a number, or an ISO-8601 time (local time when it has
    no offset). ValueError (one line) when unreadable, past, or more than a day ahead."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = datetime.datetime.fromisoformat(text).timestamp()
        except (ValueError, OverflowError, OSError):
            raise ValueError(
                f"--start-at {text!r}: not epoch seconds nor an ISO-8601 time "
                "(e.g. 2026-12-04T10:00:00+01:00)"
            ) from None
    problem = number_problem(value, "--start-at")
    if problem:
        raise ValueError(problem)
    if value <= now:
        raise ValueError(f"--start-at {text}: {now - value:.0f} s in the past")
    if value > now + MAX_START_AHEAD_S:
        raise ValueError(
            f"--start-at {text}: {value - now:.0f} s ahead; at most a day ({MAX_START_AHEAD_S} s)"
        )
    return value


def sink_timeline(timeline: Timeline) -> dict[str, list[FaultSpec]]:
    """The faults each sink plays, by sink, in the timeline's order."""
    by_sink: dict[str, list[FaultSpec]] = {}
    for planned in timeline.sink_faults():
        event = planned.event
        assert isinstance(event, SinkFault)
        by_sink.setdefault(event.target, []).append(event.spec)
    return by_sink


def settle(timeline: Timeline, states: list[dict[str, Any]]) -> None:
    """Each sink's fault as its sink told at the end (`serve`'s final `timeline`): the
    sink's own faults in the order they were played (by `at`, as planned)."""
    told: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        told.setdefault(str(state["sink"]), []).append(state)
    for planned in timeline.sink_faults():
        said = told.get(planned.event.target, [])
        if not said:
            continue
        state = said.pop(0)
        planned.scheduled(str(state.get("id", "")), float(state.get("start_at") or 0))
        why = planned.settle(str(state.get("state")), state.get("started"))
        if why is not None:
            planned.status = f"failed: {why}"


def harness(
    timeline: Timeline, t0: float, final: dict[str, Any], log: RunLog, run_dir: Path
) -> dict[str, Any]:
    """harness.json of a `maildrill sinks` run, in `maildrill run`'s shape (pure but for
    the journals' manifest). Stopped by a signal is its normal end; it is `partial` when a
    sink's fault did not start: stopped before its time (`interrupted_by` the signal), or
    failed (`aborted_by`); and when a sink died, which stopped them all (`sink_deaths`):
    the sender's mail was refused from then on."""
    faults = timeline.sent_ahead()
    failed = next((p for p in faults if p.failed), None)
    early = any(not p.done and not p.failed for p in faults)
    died = final.get("errors", [])
    aborted = None
    if failed is not None:
        e = failed.event
        aborted = f"fault {e.kind} on {e.target} at {e.at:g} s did not start: {failed.status}"
    return {
        "partial": bool(early or failed or died),
        "interrupted_by": final.get("stopped_by") if early else None,
        "aborted_by": aborted,
        "journals": journal_manifest(run_dir),
        "locust_exit_code": None,
        "sink_deaths": [{"error": e} for e in died],
        "workers_lost": [],
        "faults": timeline.records(),
        "events": log.events,
        "finished_at": time.time(),
        "sender": EXTERNAL,
        "t0": t0,
        "stopped_by": final.get("stopped_by"),
    }


def write_scenario(raw: dict[str, Any], ready: dict[str, Any], path: Path) -> None:
    """The scenario as served: each local sink's real address filled in, secrets out."""
    where = {s["name"]: (s["host"], s["port"]) for s in ready["sinks"]}
    resolved = json.loads(json.dumps(raw))
    for server in resolved.get("servers", []):
        if server.get("name") in where:
            server["host"], server["port"] = where[server["name"]]
    path.write_text(yaml.safe_dump(redact(resolved), sort_keys=False))


def describe(timeline: Timeline) -> str:
    """The faults to play, in one line."""
    parts = []
    for planned in timeline.entries:
        e = planned.event
        lasting = f" for {e.duration:g} s" if e.duration else ""
        parts.append(f"{e.kind} on {e.target} at +{e.at:g} s{lasting}")
    return "; ".join(parts) or "no faults"


def when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


class SinksRun:
    """One `maildrill sinks`: serve, play the timeline, write the run directory."""

    def __init__(
        self,
        scenario: Scenario,
        raw: dict[str, Any],
        config: SinksFile,
        run_dir: Path,
        start_at: float | None = None,
        err: TextIO = sys.stderr,
        dns_port: int = 0,
    ) -> None:
        self.scenario = scenario
        self.raw = raw
        self.config = config
        self.run_dir = run_dir
        self.start_at = start_at
        self.log = RunLog(err)
        self.timeline = plan(scenario)
        self.t0: float | None = start_at
        self.dns: tuple[str, int] | None = None  # the run's DNS server, with `dns:`
        self.board: FaultBoard | None = None  # its DNS faults
        self.dns_control_port = 0  # their control API (the sinks' token)
        # 0: a free one. 53 for a resolver that cannot be told a port (a real MTA's, in a
        # network namespace whose resolv.conf names 127.0.0.1: README).
        self.dns_port = dns_port

    def not_played(self) -> list[Planned]:
        """Postfix faults: `maildrill sinks` starts no Postfix."""
        return [p for p in self.timeline.entries if not isinstance(p.event, SentAhead)]

    def run(self) -> dict[str, Any]:
        """Serve until SIGINT or SIGTERM; returns harness.json as written. OSError when a
        sink cannot listen, ValueError when a sink refuses a fault (one line each)."""
        for planned in self.not_played():
            planned.status = "not played: maildrill sinks starts no Postfix"
            e = planned.event
            self.log.say(f"maildrill sinks: {e.kind} on {e.target} is not played: "
                         "maildrill sinks starts no Postfix (use maildrill run)")  # fmt: skip
        final = asyncio.run(self._serve())
        settle(self.timeline, final.get("timeline", []))
        self._settle_dns()
        self.log.event("stopped", signal=final.get("stopped_by"))
        t0 = self.t0 if self.t0 is not None else time.time()
        record = harness(self.timeline, t0, final, self.log, self.run_dir)
        path = self.run_dir / "harness.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        self.log.say(f"maildrill sinks: stopped; harness.json written in {self.run_dir}")
        return record

    async def _serve(self) -> dict[str, Any]:
        """The sinks, and beside them in the same loop the scenario's DNS server (its zones
        written to dns/ first and served from there), up before the sinks, down after; the
        sinks that verify against it get its address."""
        paths = write_run_zones(self.scenario, self.run_dir)
        if not paths:
            return await self._serve_sinks()
        authority = load_zones(paths)
        journals = keep_journals(authority, self.run_dir)
        assert authority.board is not None
        self.board = authority.board
        control = DnsControl(self.board, control_token())  # the sinks' token: one per run
        try:
            async with DnsServer(authority, port=self.dns_port) as server:
                self.dns = server.address
                self.dns_control_port = await control.start()
                self.config = with_run_dns(self.config, self.scenario, server.address)
                return await self._serve_sinks()
        finally:
            self.board.close()
            await control.stop()
            for journal in journals:
                journal.close()

    def _schedule_dns(self, t0: float) -> None:
        """Each DNS fault on the DNS server's board, with its epoch start."""
        for planned in self.timeline.sent_ahead():
            event = planned.event
            if not isinstance(event, DnsServerFault) or self.board is None:
                continue
            try:
                active = self.board.add(
                    event.kind,
                    event.params,
                    probability=event.probability,
                    duration=event.duration,
                    start_at=t0 + event.at,
                )
            except ValueError as exc:  # checked with the scenario: not expected
                planned.status = f"failed: the DNS server refused it: {exc}"
                continue
            planned.scheduled(active.id, time.time())

    def _settle_dns(self) -> None:
        """Each DNS fault as the board tells at the end: started, or not (yet)."""
        for planned in self.timeline.sent_ahead():
            if not isinstance(planned.event, DnsServerFault) or planned.fault_id is None:
                continue
            active = self.board.fault(planned.fault_id) if self.board else None
            if active is not None:
                why = planned.settle(active.state, active.onset)
                if why is not None:
                    planned.status = f"failed: {why}"

    async def _serve_sinks(self) -> dict[str, Any]:
        return await serve(
            self.config,
            self.run_dir,
            start_at=self.start_at,
            timeline=sink_timeline(self.timeline),
            on_ready=self._ready,
        )

    def _ready(self, ready: dict[str, Any]) -> None:
        """Every sink listens and holds its faults: scenario.yaml, and the lines to read."""
        self.t0 = float(ready["t0"])
        self._schedule_dns(self.t0)
        if self.dns is not None:  # in the ready line, for the sender and its checks
            ready["dns"] = {
                "host": self.dns[0],
                "port": self.dns[1],
                "control_port": self.dns_control_port,
            }
            self.log.event("dns_ready", host=self.dns[0], port=self.dns[1])
            self.log.say(f"maildrill sinks: DNS served on {self.dns[0]}:{self.dns[1]}")
        if self.scenario.resolver is not None:  # the sender's to ask: nothing is served for it
            self.log.say(f"maildrill sinks: servers named by DNS are the sender's to look up, at "
                         f"the scenario's resolver {self.scenario.resolver.text}")  # fmt: skip
        write_scenario(self.raw, ready, self.run_dir / "scenario.yaml")
        where = {s["name"]: [s["host"], s["port"]] for s in ready["sinks"]}
        self.log.event("sinks_ready", t0=self.t0, sinks=where)
        self.log.event("timeline", faults=describe(self.timeline))
        wait = self.t0 - time.time()
        starts = f"in {wait:.1f} s" if wait > 0.05 else "now"
        self.log.say(f"maildrill sinks: fault timeline starts {starts}, at {when(self.t0)} "
                     f"(t0 = {self.t0:.3f}): {describe(self.timeline)}")  # fmt: skip
        self.log.say(f"maildrill sinks: journals in {self.run_dir}; stop with Ctrl-C (SIGINT)")
