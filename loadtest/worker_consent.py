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
  the worker asks that resolver itself, from its own host. One on loopback is refused from
  a master on another host: it would be this worker's own (a system stub such as
  127.0.0.53 resolves real names), as a loopback target would be.
- A server named in the run's `dns:` zones is exempt from `--yes` only when its answers
  are held to loopback (no `allow_remote`) and the master is on this machine: from a
  master on another host, the plan's zones, its DNS server and so the addresses are the
  master's word, so they need this host's yes like any target.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.scenario import Scenario
from loadtest.server_spec import ServerSpec
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
        if not is_loopback(s.host) and not _held_to_loopback(scenario, s, consent)
    ]
    if scenario.resolver is not None:  # its answers may be anywhere: as `maildrill run` asks
        remote.append(f"what the resolver {scenario.resolver.text} names")
    if remote and not consent.remote:
        return (
            f"targets outside loopback ({', '.join(remote)}): start the worker with --yes "
            "to send there"
        )
    local = [f"{s.name} {s.host}:{s.port}" for s in scenario.servers if is_loopback(s.host)]
    resolver = scenario.resolver
    if resolver is not None and is_loopback(resolver.address[0]) and not consent.master_loopback:
        local.append(f"the resolver {resolver.text}")
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


def _held_to_loopback(scenario: Scenario, server: ServerSpec, consent: Consent) -> bool:
    """A name the run's zones answer for, whose answers the senders hold to loopback as
    they send (no allow_remote), in a plan from a master on this machine."""
    return (
        consent.master_loopback
        and not scenario.allow_remote
        and scenario.resolver is None
        and scenario.dns_named(server)
    )
