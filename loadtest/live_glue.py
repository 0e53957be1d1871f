"""The live state and the senders' /metrics, wired into a Locust process.

The local runner and the master feed `LiveState` the rows they journal (the Campaign's
`row_listeners`), reset it at test_start and mark the load ended at test_stop (on the
master, after every worker shipped its last rows). Each worker sends its routing policy's
circuits to the master every `SEND_EVERY_S` (`CIRCUITS`); the local runner's are read
when asked. With `--metrics-port`, gevent's WSGI server (as Locust serves its web UI)
answers `/metrics` on 127.0.0.1 from `loadtest.sender_metrics`'s registry.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from prometheus_client import make_wsgi_app

from loadtest.live_metrics import LiveState
from loadtest.locust_glue import Campaign, campaign_of
from loadtest.sender_metrics import registry_for

log = logging.getLogger("maildrill")

CIRCUITS = "maildrill_circuits"  # worker -> master: {"worker": id, "states": {server: state}}
SEND_EVERY_S = 0.5
HOST = "127.0.0.1"


def live_of(environment: Environment) -> LiveState:
    """This Locust process's live state (made on first use)."""
    live = getattr(environment, "maildrill_live", None)
    if live is None:
        live = LiveState()
        environment.maildrill_live = live  # type: ignore[attr-defined]
    return live


def _states(campaign: Campaign) -> dict[str, str]:
    driver = campaign.driver
    if driver is None:
        return {}
    return {server: state.value for server, state in driver.policy.states().items()}


def register(environment: Environment) -> None:
    """init event: feed the live state where the journal is written (the local runner or
    the master), and have workers send their circuits to the master."""
    runner = environment.runner
    campaign = campaign_of(environment)
    if isinstance(runner, WorkerRunner):

        def send_forever() -> None:
            while True:
                gevent.sleep(SEND_EVERY_S)
                if campaign.driver is not None:
                    states = {"worker": runner.client_id, "states": _states(campaign)}
                    runner.send_message(CIRCUITS, states)

        gevent.spawn(send_forever)
        return
    live = live_of(environment)
    campaign.row_listeners.append(live.add_rows)
    if isinstance(runner, LocalRunner):
        live.read_local = lambda: _states(campaign)
    elif isinstance(runner, MasterRunner):

        def on_circuits(environment: Environment, msg: Any, **_: Any) -> None:
            live.circuits[str(msg.data["worker"])] = dict(msg.data["states"])

        runner.register_message(CIRCUITS, on_circuits)

    def started(**_: Any) -> None:
        scenario = campaign.scenario
        if scenario is not None:
            live.reset([s.name for s in scenario.servers], scenario.campaign.build_schedule().total)

    def stopped(**_: Any) -> None:
        live.ended = True

    events: Any = environment.events  # Locust's add_listener is untyped
    events.test_start.add_listener(started)
    events.test_stop.add_listener(stopped)


class MetricsEndpoint:
    """The WSGI server of one Locust process's /metrics; `linger` keeps it up that many
    seconds once Locust quits, so a scraper gets the final figures."""

    def __init__(self, live: LiveState, port: int, linger: float) -> None:
        self.server = WSGIServer(
            (HOST, port), make_wsgi_app(registry_for(live)), log=None, error_log=log
        )
        self.linger = linger

    def start(self) -> int:
        self.server.start()
        return int(self.server.server_port)

    def stop(self) -> None:
        if self.linger > 0:
            gevent.sleep(self.linger)
        self.server.stop(timeout=1)


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("maildrill metrics")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: a free port, logged)",
    )
    group.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        help="keep /metrics up this many seconds after the load ends (a last scrape)",
    )


def serve_metrics(environment: Environment) -> None:
    """init event: serve /metrics when asked to (not on a worker: the master has it all)."""
    options = environment.parsed_options
    port = getattr(options, "metrics_port", None)
    if port is None or isinstance(environment.runner, WorkerRunner):
        return
    endpoint = MetricsEndpoint(
        live_of(environment), port, float(getattr(options, "metrics_linger", 0.0) or 0.0)
    )
    try:
        bound = endpoint.start()
    except OSError as exc:  # the port is taken: one line, and Locust does not start
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SystemExit(f"maildrill: --metrics-port {port}: {why}") from None
    log.info("maildrill: metrics on http://%s:%d/metrics", HOST, bound)

    def quitting(**_: Any) -> None:
        endpoint.stop()

    hook: Any = environment.events.quitting  # Locust's add_listener is untyped
    hook.add_listener(quitting)
