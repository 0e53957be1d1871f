"""What the locustfile needs from maildrill, per Locust process, kept out of the locustfile.

Local runner: loads the scenario, writes the attempts journal itself.
Master: loads the scenario, picks the campaign start t0, gives each worker its share of the
schedule ("maildrill_plan"), and writes the rows workers send ("maildrill_attempts"). It
keeps a roll of its workers (loadtest.worker_roll, written as workers.json): who finished,
who was lost. Before it quits it asks every worker for its last rows ("maildrill_flush")
and waits, bounded, for each one's answer ("maildrill_flushed", after its last batch), so
the journal on the master is complete even when the workers are on other hosts.
Worker: checks the plan's scenario as its own (targets on loopback unless allow_remote),
runs its share and ships journal rows to the master in batches; it stops on its own when
the master falls silent or the campaign's time is long over, so its load stays bounded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import runners
from locust.env import Environment
from locust.runners import (
    STATE_MISSING,
    STATE_STOPPED,
    STATE_STOPPING,
    LocalRunner,
    MasterRunner,
    WorkerRunner,
)

from loadtest.bundled import scenario_path
from loadtest.campaign import MessageFactory
from loadtest.client import Sender
from loadtest.dns_route import HostResolver
from loadtest.driver import Driver
from loadtest.idle_users import IdleUsers
from loadtest.journal import AttemptsJournal
from loadtest.limits import machine_problem, worker_share
from loadtest.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    parse_server_override,
)
from loadtest.schedule import Dispatcher
from loadtest.worker_cmd import CONNECT_WAIT_ENV, connect_bounds
from loadtest.worker_consent import SECRETS_ENV, YES_ENV, Consent, plan_problem
from loadtest.worker_roll import MISSING, PRESENT, WORKERS_FILE, WorkerRoll
from maildrill.netaddr import is_loopback
from maildrill.paths import RUN_ID_MAX, is_safe_name, write_whole

log = logging.getLogger("maildrill")

START_LEAD_S = 1.0  # t0 this far after test start, so every user is up when mail is due
BATCH_S = 0.5  # workers ship journal rows this often
FLUSH_S = 0.1  # the local runner writes its journal rows this often (and at stop)
PLAN, ATTEMPTS, DONE = "maildrill_plan", "maildrill_attempts", "maildrill_done"
FLUSH, FLUSHED, REFUSED = "maildrill_flush", "maildrill_flushed", "maildrill_refused"
WATCH_S = 0.5  # the master looks at its workers this often
FLUSH_WAIT_S = 10.0  # the master waits this long for its workers' last rows
# A worker hears the master's heartbeat every second (Locust): this long without one, the
# master is gone and the worker stops (Locust's own limit is 60 s).
MASTER_GONE_S = 10.0
# A worker still running this long after its campaign's end (schedule and drain) stops.
END_GRACE_S = 30.0


def bound_connect() -> None:
    """A worker started by `maildrill worker` (loadtest.worker_cmd) holds Locust's
    handshake with its master to the wait it was given: Locust itself retries for five
    minutes (60 tries of 5 s, module constants it reads at each try)."""
    wait = os.environ.get(CONNECT_WAIT_ENV)
    if not wait:
        return
    try:
        timeout, tries = connect_bounds(float(wait))
    except ValueError:
        return
    runners.CONNECT_TIMEOUT = timeout  # type: ignore[assignment]
    runners.CONNECT_RETRY_COUNT = tries


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("maildrill")
    group.add_argument(
        "--scenario", default="default", help="maildrill scenario file, or a bundled one's name"
    )
    group.add_argument(
        "--servers",
        default="",
        help="override server addresses: NAME=HOST:PORT[,NAME=HOST:PORT...]",
    )
    group.add_argument("--journal-dir", default="", help="attempts journal directory")
    group.add_argument("--run-id", default="", help="run id (default: scenario name + time)")
    group.add_argument(
        "--dns-server",
        default="",
        help="the run's DNS server, HOST:PORT (for run.json; servers named by DNS are "
        "looked up there)",
    )


@dataclass
class Campaign:
    """One Locust process's view of the run."""

    environment: Environment
    scenario: Scenario | None = None
    run_id: str = ""
    t0: float = 0.0
    journal: AttemptsJournal | None = None
    driver: Driver | None = None
    servers: dict[str, Any] = field(default_factory=dict)
    hosts: HostResolver | None = None  # the process's lookups of servers named by DNS
    idle: IdleUsers = field(default_factory=IdleUsers)  # who watches for the next due message
    plan_dns: str = ""  # a worker's: the master's --dns-server, sent with the plan
    buffer: list[tuple[Any, ...]] = field(default_factory=list)
    finished: bool = False
    shipper: Any = None
    flusher: Any = None
    watcher: Any = None
    roll: WorkerRoll | None = None  # the master's, once the plan is out
    shipped: int = 0  # a worker's rows sent to the master
    heard: float = field(default_factory=time.monotonic)  # a worker's last word of its master
    stopping: bool = False  # the master is stopping: workers leaving now are not lost
    # Called with each batch of rows as it is journaled here (live views: live_metrics).
    row_listeners: list[Callable[[list[Any]], None]] = field(default_factory=list)

    # -- set-up -----------------------------------------------------------------------

    def load(self) -> Scenario:
        options = self.environment.parsed_options
        overrides = dict(
            parse_server_override(item)
            for item in (getattr(options, "servers", "") or "").split(",")
            if item.strip()
        )
        path = scenario_path(getattr(options, "scenario", None))
        self.scenario = load_scenario(path, overrides)
        unresolved = [s.name for s in self.scenario.servers if s.port == 0]
        if unresolved:
            raise SystemExit(
                f"maildrill: {path}: servers {', '.join(unresolved)} have no port (local sinks); "
                "start them with `maildrill sinks` and pass --servers NAME=HOST:PORT,..."
            )
        self.servers = self.scenario.client_servers()
        return self.scenario

    def _journal_dir(self) -> Path:
        options = self.environment.parsed_options
        given = getattr(options, "journal_dir", "") or ""
        return Path(given) if given else Path("reports") / self.run_id

    def _new_run_id(self) -> str:
        given = getattr(self.environment.parsed_options, "run_id", "") or ""
        assert self.scenario is not None
        run_id = given or f"{self.scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        # It names reports/RUN-ID and goes in every message (X-Maildrill-Run).
        if not is_safe_name(run_id, RUN_ID_MAX):
            raise SystemExit(
                f"maildrill: --run-id {run_id!r}: use letters, digits and _.- (a letter or "
                f"digit first), at most {RUN_ID_MAX} characters"
            )
        return run_id

    def start(self) -> None:
        """test_start: on the local runner and the master, fix the plan."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            return  # the plan comes from the master
        scenario = self.load()
        self.run_id = self._new_run_id()
        self.t0 = time.time() + START_LEAD_S
        self.finished = False
        local = isinstance(runner, LocalRunner)
        self.journal = AttemptsJournal(
            self._journal_dir() / "attempts.csv", flush_s=FLUSH_S if local else 0.0
        )
        if local and self.flusher is None:
            self.flusher = gevent.spawn(self._flush_forever)
        log.info("maildrill: run %s, attempts journal %s", self.run_id, self.journal.path)
        workers = (
            sorted(c.id for c in runner.clients.all) if isinstance(runner, MasterRunner) else []
        )
        # What the orchestrator (and the analysis) needs to line up clocks: t0 and the plan.
        write_whole(
            self._journal_dir() / "run.json",
            json.dumps(
                {
                    "run_id": self.run_id,
                    "t0": self.t0,
                    "planned": scenario.campaign.build_schedule().total,
                    "workers": workers,
                    "started_at": time.time(),
                    **self._dns_server(),
                }
            ),
        )
        if isinstance(runner, MasterRunner):
            for share, worker in enumerate(workers):
                plan = {
                    "run_id": self.run_id,
                    "t0": self.t0,
                    "share": share,
                    "of": len(workers),
                    # The scenario travels with the plan: workers elsewhere need no file.
                    "scenario": scenario.model_dump(mode="json"),
                    # Where servers named by DNS are looked up (the master's --dns-server).
                    "dns_server": self._dns_given(),
                }
                runner.send_message(PLAN, plan, client_id=worker)
            self.roll = WorkerRoll(workers, self.t0)
            self.stopping = False
            self._write_roll()
            if self.watcher is None:
                self.watcher = gevent.spawn(self._watch_workers)
        else:
            self._make_driver(scenario, 0, 1, "local", self._write_local)

    def _dns_given(self) -> str:
        """--dns-server as given (HOST:PORT), or ""."""
        return str(getattr(self.environment.parsed_options, "dns_server", "") or "")

    def _dns_server(self) -> dict[str, Any]:
        """run.json's `dns`: where the run's DNS server listened (maildrill.dns), if any."""
        given = getattr(self.environment.parsed_options, "dns_server", "") or ""
        host, _, port = given.rpartition(":")
        return {"dns": {"host": host, "port": int(port)}} if port.isdigit() else {}

    def on_plan(self, data: dict[str, Any]) -> None:
        """Worker: the master's plan for this run. Its scenario is checked as a file of
        one's own would be (targets outside loopback only with allow_remote), then against
        what this worker was started to allow (loadtest.worker_consent): the master's word
        alone sends no mail off this machine and reads no secret of it."""
        runner = self.environment.runner
        assert isinstance(runner, WorkerRunner)
        try:
            scenario = parse_scenario(data["scenario"], "scenario from the master")
            workers = int(data["of"])
        except (ScenarioError, KeyError, TypeError, ValueError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            runner.send_message(REFUSED, {"worker": runner.client_id, "why": why})
            self.leave(f"refused the master's plan: {why}", exit_code=2)
            return
        consent = Consent(
            remote=os.environ.get(YES_ENV) == "1",
            secrets=os.environ.get(SECRETS_ENV) == "1",
            master_loopback=is_loopback(runner.master_host),
        )
        problem = plan_problem(scenario, consent)
        if problem is None and not consent.master_loopback:
            # On its own host: its share of the users is all this machine holds. A worker
            # beside its master was checked with the whole run (loadtest.limits.Here).
            problem = machine_problem(scenario, worker_share(scenario, workers))
        if problem is not None:
            runner.send_message(REFUSED, {"worker": runner.client_id, "why": problem})
            self.leave(f"refused the master's plan: {problem}", exit_code=2)
            return
        self.scenario = scenario
        remote = [
            f"{s.name} {s.host}:{s.port}"
            for s in scenario.servers
            if not is_loopback(s.host) and not scenario.dns_named(s)  # answers checked as sent
        ]
        if remote:
            log.warning("maildrill: sending to targets outside loopback: %s", ", ".join(remote))
        self.servers = scenario.client_servers()
        self.plan_dns = str(data.get("dns_server") or "")
        self.hosts = None
        self.run_id = data["run_id"]
        self.t0 = data["t0"]
        self.finished = False
        self.buffer.clear()
        runner = self.environment.runner
        assert isinstance(runner, WorkerRunner)
        self._make_driver(scenario, data["share"], data["of"], runner.client_id, self._buffer)
        if self.shipper is None:
            self.shipper = gevent.spawn(self._ship_forever)
        if self.watcher is None:
            campaign = scenario.campaign
            end = self.t0 + campaign.build_schedule().duration_s + campaign.drain_s
            self.watcher = gevent.spawn(self._watch_master, end + END_GRACE_S)

    def _make_driver(self, scenario: Scenario, share: int, of: int, worker: str, emit: Any) -> None:
        self.driver = Driver(
            dispatcher=Dispatcher(
                scenario.campaign.build_schedule(), share, of, scenario.campaign.priority()
            ),
            factory=MessageFactory(
                scenario.streams(),
                self.run_id,
                scenario.campaign.seed,
                scenario.campaign.allowed_recipient_domains,
            ),
            policy=scenario.policy(seed=f"{scenario.campaign.seed}/{share}"),
            retry=scenario.retry_policy(),
            t0=self.t0,
            emit=emit,
            worker=worker,
            taken=self.idle.taken,
        )

    # -- journal rows -----------------------------------------------------------------

    def _write_local(self, row: tuple[Any, ...]) -> None:
        assert self.journal is not None
        self.journal.write([row])
        for listener in self.row_listeners:
            listener([row])

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_S)
            if self.journal is not None:
                self.journal.flush()

    def _buffer(self, row: tuple[Any, ...]) -> None:
        self.buffer.append(row)

    def ship(self) -> None:
        """Worker: send buffered rows to the master."""
        if self.buffer:
            rows, self.buffer = self.buffer, []
            self.environment.runner.send_message(ATTEMPTS, rows)  # type: ignore[union-attr]
            self.shipped += len(rows)

    def _ship_forever(self) -> None:
        while True:
            gevent.sleep(BATCH_S)
            self.ship()

    def on_attempts(self, rows: list[list[Any]], worker: str) -> None:
        """Master: rows from a worker."""
        if self.roll is not None:
            self.roll.received(worker, len(rows))
        if self.journal is not None:
            self.journal.write(rows)
            for listener in self.row_listeners:
                listener(rows)

    # -- the end ----------------------------------------------------------------------

    def share_finished(self) -> None:
        """A user found nothing left to do in this process's share."""
        if self.finished:
            return
        self.finished = True
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            self.ship()
            runner.send_message(DONE, {"worker": runner.client_id})

    def on_done(self, worker: str) -> None:
        if self.roll is not None:
            self.roll.finished(worker)

    def on_flushed(self, worker: str, shipped: int) -> None:
        if self.roll is not None:
            self.roll.flushed(worker, shipped)

    def on_refused(self, worker: str, why: str) -> None:
        log.error("maildrill: worker %s refused the plan: %s", worker, why)
        if self.roll is not None:
            self.roll.refused(worker, why)
            self._write_roll()  # the orchestrator stops the run on it (loadtest.orchestrate)

    def all_finished(self) -> bool:
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            return self.roll is not None and self.roll.all_finished()
        return self.finished

    # -- the master's roll of its workers ---------------------------------------------

    def _watch_workers(self) -> None:
        while True:
            gevent.sleep(WATCH_S)
            self.check_workers()

    def check_workers(self) -> None:
        """Master: note the workers lost since the last look (workers.json)."""
        runner = self.environment.runner
        if self.roll is None or not isinstance(runner, MasterRunner):
            return
        seen = {c.id: MISSING if c.state == STATE_MISSING else PRESENT for c in runner.clients.all}
        # Stopping (Locust's state is set before it tells the workers): leaving is expected.
        stopping = self.stopping or runner.state in (STATE_STOPPING, STATE_STOPPED)
        now = time.time()
        back = self.roll.recover(now, seen)
        for worker in back:
            log.warning("maildrill: worker %s is back (heartbeats again)", worker)
        lost = self.roll.check(now, seen, stopping)
        for worker in lost:
            log.error("maildrill: worker %s lost (%s)", worker, self.roll.workers[worker].why)
        if lost or back:
            self._write_roll()

    def _write_roll(self) -> None:
        if self.roll is not None:
            record = json.dumps(self.roll.record(), indent=2) + "\n"
            write_whole(self._journal_dir() / WORKERS_FILE, record)

    def _await_flushes(self, runner: MasterRunner) -> None:
        """Master, stopping: every worker still there ships its last rows; wait for each
        one's word that it has (or for it to be lost), at most FLUSH_WAIT_S."""
        if self.roll is None:
            return
        self.stopping = True
        for worker, state in self.roll.workers.items():
            # One lost for a missed heartbeat is asked too: it may be back by now.
            if state.shipped is None and worker in runner.clients:
                runner.send_message(FLUSH, None, client_id=worker)
        deadline = time.monotonic() + FLUSH_WAIT_S
        while self.roll.awaiting_flush() and time.monotonic() < deadline:
            gevent.sleep(0.05)
            self.check_workers()
        for worker in self.roll.settle(time.time(), FLUSH_WAIT_S):
            log.error("maildrill: worker %s lost (%s)", worker, self.roll.workers[worker].why)
        self._write_roll()

    # -- a worker on its own ----------------------------------------------------------

    def on_flush(self) -> None:
        """Worker: the master is stopping. Stop the users (an attempt cut short is
        journaled as interrupted), ship the rest and say so (test_stop, below)."""
        runner = self.environment.runner
        if runner is None:
            return
        if runner.state == STATE_STOPPED:
            self._send_flushed()
        else:
            runner.stop()

    def _send_flushed(self) -> None:
        runner = self.environment.runner
        assert isinstance(runner, WorkerRunner)
        self.ship()
        runner.send_message(FLUSHED, {"worker": runner.client_id, "rows": self.shipped})

    def _watch_master(self, end: float) -> None:
        """Worker: stop when the master falls silent, or the campaign is long over."""
        while True:
            gevent.sleep(1.0)
            silent = time.monotonic() - self.heard
            if silent > MASTER_GONE_S:
                self.leave(f"no word from the master for {silent:.0f} s", exit_code=1)
                return
            if time.time() > end:
                self.leave("the campaign ended long ago and the master has not stopped this "
                           "worker", exit_code=1)  # fmt: skip
                return

    def leave(self, why: str, exit_code: int) -> None:
        """Worker: stop on its own (its rows shipped first, as far as they can go)."""
        log.error("maildrill: %s; this worker stops", why)
        self.environment.process_exit_code = exit_code
        runner = self.environment.runner
        if runner is not None:
            gevent.spawn(runner.quit)

    # -- the end ----------------------------------------------------------------------

    def stop(self) -> None:
        """test_stop: workers ship what is left and say so; the master waits for that;
        the local runner closes its journal."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            self._send_flushed()
        elif isinstance(runner, MasterRunner):
            self._await_flushes(runner)
        elif isinstance(runner, LocalRunner) and self.journal is not None:
            self.journal.close()

    def stopping_early(self) -> None:
        """test_stopping (fired as Locust's stop begins, before its web mode's --autoquit
        wait; test_stop may come after it on a master): Locust waits --autoquit for a last
        look at the UI; a run stopped before its planned end (Ctrl-C) is being left, so
        it quits at once."""
        options = self.environment.parsed_options
        if self.environment.web_ui is not None and options is not None and self._stopped_early():
            options.autoquit = 0

    def _stopped_early(self) -> bool:
        """The test stopped before the campaign's planned end (its schedule and drain)."""
        if self.scenario is None or not self.t0:
            return False
        campaign = self.scenario.campaign
        return time.time() < self.t0 + campaign.build_schedule().duration_s + campaign.drain_s

    def quit(self) -> None:
        self._write_roll()
        if self.journal is not None:
            self.journal.close()
        for greenlet in (self.shipper, self.flusher, self.watcher):
            if greenlet is not None:
                greenlet.kill(block=False)

    def hear(self) -> None:
        """Worker: the master's heartbeat came."""
        self.heard = time.monotonic()

    def sender(self) -> Sender:
        """A sender held to the scenario's allowed domains (reserved ones only until a
        worker has its plan)."""
        allowed = self.scenario.campaign.allowed_recipient_domains if self.scenario else []
        return Sender(self.servers, allowed, self._hosts())

    def _hosts(self) -> HostResolver | None:
        """One resolver and answer cache per process (as an MTA host's resolver), asking
        the scenario's named `resolver:` (a worker's comes with the plan's scenario) or the
        run's DNS server; None when no server is named by DNS or there is none to ask."""
        named = any(s.resolve for s in self.servers.values())
        if self.hosts is None and self.scenario is not None and named:
            host, _, port = (self._dns_given() or self.plan_dns).rpartition(":")
            run_dns = (host, int(port)) if port.isdigit() else None
            resolver = self.scenario.senders_resolver(run_dns)
            if resolver is not None:
                self.hosts = HostResolver(resolver, allow_remote=self.scenario.allow_remote)
        return self.hosts


def campaign_of(environment: Environment) -> Campaign:
    campaign = getattr(environment, "maildrill", None)
    if campaign is None:
        campaign = Campaign(environment)
        environment.maildrill = campaign  # type: ignore[attr-defined]
    return campaign


def register(environment: Environment) -> None:
    """init event: wire the custom messages for this runner's role."""
    campaign = campaign_of(environment)
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(
            ATTEMPTS, lambda environment, msg, **_: campaign.on_attempts(msg.data, msg.node_id)
        )
        runner.register_message(DONE, lambda environment, msg, **_: campaign.on_done(msg.node_id))
        runner.register_message(
            FLUSHED, lambda environment, msg, **_: campaign.on_flushed(msg.node_id,
                                                                       int(msg.data["rows"]))
        )  # fmt: skip
        runner.register_message(
            REFUSED, lambda environment, msg, **_: campaign.on_refused(msg.node_id,
                                                                       str(msg.data["why"]))
        )  # fmt: skip
    elif isinstance(runner, WorkerRunner):
        runner.register_message(PLAN, lambda environment, msg, **_: campaign.on_plan(msg.data))
        runner.register_message(FLUSH, lambda environment, msg, **_: campaign.on_flush())
        environment.events.heartbeat_received.add_listener(  # type: ignore[no-untyped-call]
            lambda **_: campaign.hear()
        )
