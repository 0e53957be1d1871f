"""A Locust master that is not maildrill's: it sends its workers a plan whose scenario
names a server outside loopback without `allow_remote` (what a careless or hostile master
could send). Run by tests/integration/test_distributed_cli.py with
`locust -f THIS --master`; a `maildrill worker` must refuse the plan.

The server is 0.0.0.0, which Linux connects to this machine: should a worker wrongly
accept, its attempts still go nowhere else.
"""

from __future__ import annotations

import time
from typing import Any

import yaml
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from loadtest.bundled import scenario_path


def _plan() -> dict[str, Any]:
    scenario = yaml.safe_load(scenario_path("default").read_text())
    for server in scenario["servers"]:
        server.update(host="0.0.0.0", port=9, local=False)
        server.pop("sink", None)
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
