"""A Locust master that is not maildrill's: it sends its workers a plan a careless or
hostile master could send, chosen by FOREIGN_PLAN: `remote` names a server outside loopback
without `allow_remote`, `allowed` the same with `allow_remote: true`, `secret` a loopback
server whose AUTH password is read from a file of the worker's host. Run by
tests/integration/test_distributed_cli.py with `locust -f THIS --master`; a `maildrill
worker` started without --yes / --allow-secrets must refuse the plan.

The remote server is 0.0.0.0, which Linux connects to this machine, and port 9: should a
worker wrongly accept, its attempts still go nowhere else.
"""

from __future__ import annotations

import os
import time
from typing import Any

import yaml
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from loadtest.bundled import scenario_path


def _plan() -> dict[str, Any]:
    scenario = yaml.safe_load(scenario_path("default").read_text())
    kind = os.environ.get("FOREIGN_PLAN", "remote")
    for server in scenario["servers"]:
        server.update(host="127.0.0.1" if kind == "secret" else "0.0.0.0", port=9, local=False)
        server.pop("sink", None)
    if kind == "allowed":
        scenario["allow_remote"] = True
    if kind == "secret":
        scenario["servers"][0].update(username="u", password_file="/etc/hostname")
    scenario["faults"] = []
    return {"run_id": "foreign", "t0": time.time() + 1, "share": 0, "of": 1,
            "scenario": scenario}  # fmt: skip


class CampaignSender(User):  # the name of maildrill's user, so the spawn finds it
    wait_time = constant(1)

    @task
    def idle(self) -> None:
        pass


def _send_plan(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        for client in runner.clients.all:
            runner.send_message("maildrill_plan", _plan(), client_id=client.id)


events.test_start.add_listener(_send_plan)
