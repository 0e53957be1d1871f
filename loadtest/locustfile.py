"""maildrill's Locust entry point: `locust -f loadtest/locustfile.py --scenario FILE`.

Users are SMTP delivery agents: each takes the next due message of the campaign's open-model
schedule, sends it with smtplib through the scenario's routing, fires one Locust request
event per attempt (request_type "SMTP", name = the server) and journals the attempt.
Works headless, with the web UI, with --processes N, and with --master/--worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from locust import LoadTestShape, User, events, task
from locust.env import Environment

from loadtest import live_glue, stats_window
from loadtest.failover_tab import routes as failover_tab
from loadtest.locust_glue import START_LEAD_S, add_arguments, bound_connect, campaign_of, register

IDLE_S = 0.2  # longest nap while waiting for the next due message
# Attempts a user makes in one Locust task, at most, while messages are due. Each task ends
# in Locust's wait (a trip through gevent's hub even at wait_time 0) and its scheduling of
# the next: a few microseconds a message at the harness's ceiling, paid once per burst
# instead. Every attempt still yields while it waits for the server; a forced stop (how
# maildrill's runs stop) kills the user mid-burst as mid-task, the attempt journaled.
BURST = 16


class SmtpFailure(Exception):
    """Carries the attempt's outcome to Locust's failure table (one row per kind)."""


def _arguments(parser: Any, **_: Any) -> None:
    add_arguments(parser)
    live_glue.add_arguments(parser)
    failover_tab.add_arguments(parser)


def _init(environment: Environment, **_: Any) -> None:
    register(environment)
    live_glue.register(environment)
    live_glue.serve_metrics(environment)
    failover_tab.install(environment)
    stats_window.register(environment)


def _test_start(environment: Environment, **_: Any) -> None:
    campaign_of(environment).start()


def _test_stopping(environment: Environment, **_: Any) -> None:
    campaign_of(environment).stopping_early()


def _test_stop(environment: Environment, **_: Any) -> None:
    campaign_of(environment).stop()


def _quitting(environment: Environment, **_: Any) -> None:
    campaign_of(environment).quit()


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    """Locust's `add_listener` is untyped: as a decorator it would untype the listeners."""
    hook.add_listener(listener)


bound_connect()  # before Locust's worker, if this is one, shakes hands with its master
_listen(events.init_command_line_parser, _arguments)
_listen(events.init, _init)
_listen(events.test_start, _test_start)
_listen(events.test_stopping, _test_stopping)
_listen(events.test_stop, _test_stop)
_listen(events.quitting, _quitting)


class CampaignSender(User):
    """One concurrent SMTP connection per server, like one delivery agent of an MTA."""

    def on_start(self) -> None:
        self.campaign = campaign_of(self.environment)
        self.sender = self.campaign.sender()

    def on_stop(self) -> None:
        self.sender.close()

    @task
    def deliver(self) -> None:
        for _ in range(BURST):
            if not self.deliver_one():
                return

    def deliver_one(self) -> bool:
        """One step of the driver: True when it made an attempt (another may be due)."""
        driver = self.campaign.driver
        if driver is None:
            gevent.sleep(IDLE_S)
            return False
        step = driver.step(self.sender)
        record = step.record
        if record is not None:
            failed = record.outcome.value != "accepted"
            self.environment.events.request.fire(
                request_type="SMTP",
                name=record.server,
                response_time=record.latency_ms,
                response_length=record.bytes,
                exception=SmtpFailure(
                    f"{record.outcome.value} at {record.phase.value} {record.code or ''} "
                    f"{record.enhanced}".rstrip()
                )
                if failed
                else None,
                context={"msg_id": record.msg_id, "attempt": record.attempt},
            )
            return True
        if step.wait is not None and step.wait > 0:
            self.campaign.idle.wait(step.wait, IDLE_S)
        elif step.wait is not None:
            gevent.sleep(0)  # go on at once (a message not sent), after the others' turn
        else:
            self.campaign.share_finished()
            gevent.sleep(IDLE_S)
        return False


class CampaignShape(LoadTestShape):
    """All users for the campaign's length plus its drain; ends early once all is sent."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        campaign = campaign_of(self.runner.environment)
        scenario = campaign.scenario or campaign.load()
        run_time = self.get_run_time()  # type: ignore[no-untyped-call]
        end = START_LEAD_S + scenario.campaign.build_schedule().duration_s
        if run_time > end + scenario.campaign.drain_s:
            return None
        if run_time > end and campaign.all_finished():
            return None
        return scenario.users, float(scenario.users)
