"""What a `maildrill worker` agrees to run: the plan's scenario comes from the master, and a
master is only an address someone typed, so the scenario's own word (`allow_remote: true`)
is not enough. Pure: loadtest.locust_glue asks `plan_problem` when a plan arrives.

- Targets outside loopback need the worker's own consent (`maildrill worker --yes`, or a
  yes at its terminal), as `maildrill run` needs for its targets.
- A server whose AUTH password comes from `password_env` / `password_file` needs
  `--allow-secrets`: otherwise any master could make the worker read any variable or file
  of its host and send it as SMTP AUTH to an address of the master's choosing.
- Targets on loopback are refused when the master is not on loopback: on another host they
  would be the worker's OWN 127.0.0.1, not the servers the master's scenario meant.
- A scenario that names its `resolver:` needs `--yes` too (its answers may be anywhere);
  the worker asks that resolver itself, from its own host (on loopback: its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.scenario import Scenario
from maildrill.netaddr import is_loopback

# How `maildrill worker` hands its consent to the Locust process it starts.
YES_ENV = "MAILDRILL_WORKER_YES"
SECRETS_ENV = "MAILDRILL_WORKER_SECRETS"


@dataclass(frozen=True)
class Consent:
    remote: bool  # targets outside loopback may be sent to (--yes)
    secrets: bool  # passwords may be read from this host's variables and files
    master_loopback: bool  # the master is on this machine


def plan_problem(scenario: Scenario, consent: Consent) -> str | None:
    """Why this worker will not run the scenario (one line), or None."""
    remote = [
        f"{s.name} {s.host}:{s.port}"
        for s in scenario.servers
        # A name the run's zones answer for is checked as sent: loopback without allow_remote.
        if not is_loopback(s.host) and (scenario.allow_remote or not scenario.dns_named(s))
    ]
    if scenario.resolver is not None:  # its answers may be anywhere: as `maildrill run` asks
        remote.append(f"what the resolver {scenario.resolver.text} names")
    if remote and not consent.remote:
        return (
            f"targets outside loopback ({', '.join(remote)}): start the worker with --yes "
            "to send there"
        )
    local = [f"{s.name} {s.host}:{s.port}" for s in scenario.servers if is_loopback(s.host)]
    if local and not consent.master_loopback:
        return (
            f"targets on loopback ({', '.join(local)}) from a master on another host: "
            "they would be this worker's own machine"
        )
    secret = [s.name for s in scenario.servers if s.password_env or s.password_file is not None]
    if secret and not consent.secrets:
        return (
            f"{', '.join(secret)} read an AUTH password from this host (password_env or "
            "password_file): start the worker with --allow-secrets to allow it"
        )
    return None
