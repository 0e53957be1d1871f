"""What the locustfile needs from maildrill, per Locust process, kept out of the locustfile.

Local runner: loads the scenario, writes the attempts journal itself.
Master: loads the scenario, picks the campaign start t0, gives each worker its share of the
schedule ("maildrill_plan"), and writes the rows workers send ("maildrill_attempts").
Worker: runs its share and ships journal rows to the master in batches.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from loadtest.bundled import scenario_path
from loadtest.campaign import MessageFactory
from loadtest.client import Sender
from loadtest.driver import Driver
from loadtest.journal import AttemptsJournal
from loadtest.scenario import Scenario, load_scenario, parse_scenario, parse_server_override
from loadtest.schedule import Dispatcher
from maildrill.paths import RUN_ID_MAX, is_safe_name, write_whole

log = logging.getLogger("maildrill")

START_LEAD_S = 1.0  # t0 this far after test start, so every user is up when mail is due
BATCH_S = 0.5  # workers ship journal rows this often
FLUSH_S = 0.1  # the local runner writes its journal rows this often (and at stop)
PLAN, ATTEMPTS, DONE = "maildrill_plan", "maildrill_attempts", "maildrill_done"


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
        "--dns-server", default="", help="the run's DNS server, HOST:PORT (for run.json)"
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
    buffer: list[tuple[Any, ...]] = field(default_factory=list)
    done_workers: set[str] = field(default_factory=set)
    expected_workers: set[str] = field(default_factory=set)
    finished: bool = False
    shipper: Any = None
    flusher: Any = None
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
        self.done_workers.clear()
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
                }
                runner.send_message(PLAN, plan, client_id=worker)
            self.expected_workers = set(workers)
        else:
            self._make_driver(scenario, 0, 1, "local", self._write_local)

    def _dns_server(self) -> dict[str, Any]:
        """run.json's `dns`: where the run's DNS server listened (maildrill.dns), if any."""
        given = getattr(self.environment.parsed_options, "dns_server", "") or ""
        host, _, port = given.rpartition(":")
        return {"dns": {"host": host, "port": int(port)}} if port.isdigit() else {}

    def on_plan(self, data: dict[str, Any]) -> None:
        """Worker: the master's plan for this run."""
        scenario = self.scenario = parse_scenario(data["scenario"], "scenario from the master")
        self.servers = scenario.client_servers()
        self.run_id = data["run_id"]
        self.t0 = data["t0"]
        self.finished = False
        self.buffer.clear()
        runner = self.environment.runner
        assert isinstance(runner, WorkerRunner)
        self._make_driver(scenario, data["share"], data["of"], runner.client_id, self._buffer)
        if self.shipper is None:
            self.shipper = gevent.spawn(self._ship_forever)

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
            policy=scenario.policy(),
            retry=scenario.retry_policy(),
            t0=self.t0,
            emit=emit,
            worker=worker,
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

    def _ship_forever(self) -> None:
        while True:
            gevent.sleep(BATCH_S)
            self.ship()

    def on_attempts(self, rows: list[list[Any]]) -> None:
        """Master: rows from a worker."""
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
        self.done_workers.add(worker)

    def all_finished(self) -> bool:
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            expected = self.expected_workers
            return bool(expected) and expected <= self.done_workers
        return self.finished

    def stop(self) -> None:
        """test_stop: workers ship what is left; the local runner closes its journal."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            self.ship()
        elif isinstance(runner, LocalRunner) and self.journal is not None:
            self.journal.close()

    def quit(self) -> None:
        if self.journal is not None:
            self.journal.close()
        for greenlet in (self.shipper, self.flusher):
            if greenlet is not None:
                greenlet.kill(block=False)

    def sender(self) -> Sender:
        """A sender held to the scenario's allowed domains (reserved ones only until a
        worker has its plan)."""
        allowed = self.scenario.campaign.allowed_recipient_domains if self.scenario else []
        return Sender(self.servers, allowed)


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
            ATTEMPTS, lambda environment, msg, **_: campaign.on_attempts(msg.data)
        )
        runner.register_message(
            DONE, lambda environment, msg, **_: campaign.on_done(msg.data["worker"])
        )
    elif isinstance(runner, WorkerRunner):
        runner.register_message(PLAN, lambda environment, msg, **_: campaign.on_plan(msg.data))
