"""Locust workers on other hosts: the addresses `maildrill run --master-bind` and
`maildrill worker --master` take, and the rule for binding outside loopback.

A drill's Locust master normally listens on 127.0.0.1 for workers it starts itself. With
`--master-bind ADDR[:PORT] --expect-workers N` it listens on ADDR for N workers started
elsewhere (`maildrill worker --master HOST:PORT`, loadtest.worker_cmd), which get the
scenario, the run id and t0 from it and ship their journal rows back over Locust's own
channel (loadtest.locust_glue), so the run directory on the master ends up complete.
Listening outside loopback lets other machines drive load through this one's scenario:
like a target outside loopback, it needs the scenario's `allow_remote: true` and `--yes`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildrill.netaddr import is_loopback

DEFAULT_PORT = 5557  # Locust's own default master port
# How long the master waits for its workers to connect, and a worker for its master.
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 3600.0
MAX_HOST = 253
MAX_LABEL = 63


class AddressError(ValueError):
    """An address given on the command line that cannot be used; one line for the user."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True, slots=True)
class RemoteWorkers:
    """`maildrill run --master-bind ADDR[:PORT] --expect-workers N`: where the master
    listens, how many workers it waits for, and for how long."""

    bind: Endpoint
    expect: int
    wait_s: float = DEFAULT_WAIT_S


def parse_endpoint(text: str, flag: str, *, bind: bool) -> Endpoint:
    """HOST[:PORT] (PORT defaults to Locust's 5557). To bind, HOST is an IPv4 address (or
    localhost): Locust's channel (ZeroMQ) binds no IPv6 and no name. To connect, a host
    name will do too."""
    if text.count(":") > 1 or text.strip().startswith("["):
        instead = "an IPv4 address" if bind else "an IPv4 address or a host name"
        raise AddressError(f"{flag} {text!r}: IPv6 is not supported (Locust's channel binds "
                           f"no IPv6): give {instead}")  # fmt: skip
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = text.strip(), str(DEFAULT_PORT)
    if not host:
        raise AddressError(f"{flag} {text!r}: give HOST[:PORT]")
    try:
        port = int(port_text)
    except ValueError:
        raise AddressError(f"{flag} {text!r}: {port_text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise AddressError(f"{flag} {text!r}: the port must be 1-65535")
    if host == "localhost":
        return Endpoint("127.0.0.1", port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if bind:
            raise AddressError(f"{flag} {text!r}: bind to an IPv4 address (e.g. 0.0.0.0 or "
                               "the address of one interface)") from None  # fmt: skip
        if not is_host_name(host):
            raise AddressError(f"{flag} {text!r}: {host!r} is not a host name") from None
        return Endpoint(host.lower(), port)
    if address.version != 4:
        raise AddressError(f"{flag} {text!r}: an IPv4 address (Locust binds no IPv6)")
    return Endpoint(str(address), port)


def is_host_name(host: str) -> bool:
    """A DNS host name: labels of letters, digits and hyphens, at most 63 characters each
    (a longer one fails in the resolver's encoder, not as "unknown host"), and a last label
    that is not all digits (1.2.3.4.5 is a mistyped address, not a name to look up)."""
    labels = host.split(".")
    return (
        len(host) <= MAX_HOST
        and all(
            0 < len(label) <= MAX_LABEL and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        )
        and not labels[-1].isdigit()
    )


def bind_problem(bind: Endpoint, allow_remote: bool) -> str | None:
    """Why the master may not listen there: outside loopback without allow_remote. (`--yes`
    is the CLI's to ask, as for targets.)"""
    if bind.loopback or allow_remote:
        return None
    return (
        f"--master-bind {bind}: outside loopback, other machines could drive this scenario's "
        "load; set allow_remote: true in the scenario (and pass --yes) to listen there"
    )


def loopback_targets_problem(bind: Endpoint, targets: list[tuple[str, str]]) -> str | None:
    """Why a master listening outside loopback may not send these (name, host) targets:
    workers on other hosts would send to their OWN loopback, not to these servers."""
    if bind.loopback:
        return None
    local = [f"{name} {host}" for name, host in targets if is_loopback(host)]
    if not local:
        return None
    return (
        f"--master-bind {bind}: workers on other hosts would send to their own loopback, "
        f"not to {', '.join(local)}; give the servers addresses the workers can reach"
    )


def parse_wait(text: str, flag: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise AddressError(f"{flag} {text!r}: not a number of seconds") from None
    if not 0 < seconds <= MAX_WAIT_S:
        raise AddressError(f"{flag} {text}: between 0 and {MAX_WAIT_S:g} seconds")
    return seconds


# -- the orchestrator's side (loadtest.orchestrate) -------------------------------------


def master_args(remote: RemoteWorkers) -> list[str]:
    """The Locust master's arguments: listen there, wait (bounded) for the workers."""
    return [
        "--master", "--master-bind-host", remote.bind.host,
        "--master-bind-port", str(remote.bind.port),
        "--expect-workers", str(remote.expect),
        "--expect-workers-max-wait", f"{remote.wait_s:g}",
    ]  # fmt: skip


_CONNECTED = re.compile(r"Waiting for workers to be ready, (\d+) of (\d+) connected")


def not_connected(remote: RemoteWorkers, locust_log: str) -> str:
    """The one line for a master whose workers did not all come: how many did (Locust
    says so in its log after 5 s of waiting), and how to start them."""
    counts = _CONNECTED.findall(locust_log)
    if remote.expect == 1:
        came = "the Locust worker did not connect"
    elif counts:
        came = f"only {counts[-1][0]} of {remote.expect} Locust workers connected"
    else:
        came = f"fewer than {remote.expect} Locust workers connected"
    return (
        f"{came} to {remote.bind} within {remote.wait_s:g} s; "
        f"start each with `{worker_command(remote.bind)}`"
    )


def worker_command(bind: Endpoint) -> str:
    """How to start a worker for a master listening at `bind`, as the user is told it: a
    master on all interfaces (0.0.0.0) is reached at an address only the user knows."""
    host = "THIS-HOST" if bind.host == "0.0.0.0" else bind.host
    return f"maildrill worker --master {host}:{bind.port}"


REFUSED_PLAN = "refused the plan: "  # the start of a refusing worker's `why`


class WorkersFile:
    """workers.json as the Locust master rewrites it (loadtest.worker_roll): each worker
    newly lost, once; who refused the plan; at the end, who is lost for good, who came
    back, whose rows never arrived. Parsed again only when the file changed (its size or
    time), so every question asked of one version reads the same workers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reported: set[str] = set()
        self.stamp: tuple[int, int] | None = None
        self.workers: dict[str, dict[str, Any]] = {}

    def read(self, again: bool = False) -> dict[str, dict[str, Any]]:
        """The workers as last written (`again`: parsed anew, for the last look)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self.stamp and not again:
                return self.workers
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return self.workers
        self.stamp = stamp
        workers = data.get("workers") if isinstance(data, dict) else None
        found = workers if isinstance(workers, dict) else {}
        self.workers = {w: state for w, state in found.items() if isinstance(state, dict)}
        return self.workers

    def newly_lost(self) -> list[dict[str, Any]]:
        lost = []
        for worker, state in self.read().items():
            if worker in self.reported:
                continue
            if state.get("lost_at_s") is not None:
                self.reported.add(worker)
                lost.append({"worker": worker, "at_s": state["lost_at_s"],
                             "why": state.get("why", "")})  # fmt: skip
        return lost

    def refusals(self) -> list[tuple[str, str]]:
        """Each worker that refused the plan, with why (loadtest.worker_consent, or its
        machine's limits): the drill cannot run as written without its share."""
        return [
            (worker, str(state["why"]))
            for worker, state in self.read().items()
            if str(state.get("why", "")).startswith(REFUSED_PLAN)
        ]

    def lost_at_end(self) -> list[dict[str, Any]]:
        """At the end: the workers lost for good (one lost for a missed heartbeat that came
        back and flushed every row is not)."""
        return [
            {"worker": worker, "at_s": state["lost_at_s"], "why": state.get("why", "")}
            for worker, state in self.read(again=True).items()
            if state.get("lost_at_s") is not None
        ]

    def recovered(self) -> list[dict[str, Any]]:
        """At the end: the workers that missed heartbeats, came back, and are not lost."""
        return [
            {
                "worker": worker,
                "missing_at_s": state["missing_at_s"],
                "recovered_at_s": state.get("recovered_at_s"),
            }
            for worker, state in self.read(again=True).items()
            if state.get("missing_at_s") is not None and state.get("lost_at_s") is None
        ]

    def rows_missing(self) -> dict[str, int]:
        """At the end: workers whose final count says rows never reached the master."""
        return {
            worker: int(state["rows_missing"])
            for worker, state in self.read(again=True).items()
            if state.get("rows_missing")
        }
