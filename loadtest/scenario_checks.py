"""What a valid scenario holds to across its parts, one small check each, run in order.

Each section of a scenario checks itself (server_spec, routing_spec, campaign_spec,
fault_event); these checks see the parts together: the servers that routes, faults,
Postfix instances and upstreams name, faults that contradict each other, the SLO rules,
loopback and the address policy. `Scenario` runs CHECKS in order while it validates, and
the first problem is the one reported: each raises ValueError naming the field.

A check takes the scenario as `Parts` (what it reads), not as the class: the class runs
these checks, so this module does not import it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import ValidationError

from loadtest.addresses import AddressError, AddressPolicy
from loadtest.analysis.slo import parse_slo
from loadtest.analysis.summary_model import stream_metric
from loadtest.campaign_spec import CampaignSpec
from loadtest.dkim_keys import publishing_problem, signers
from loadtest.dns_fault_checks import dns_fault_runnable, senders_ask_elsewhere
from loadtest.dns_servers import is_name
from loadtest.dns_spec import DnsSpec
from loadtest.fault_event import DNS_TARGET, EXCLUSIVE_KINDS, MTA_KINDS, FaultEvent
from loadtest.mta_identity import shared_source
from loadtest.postfix import setting_problem
from loadtest.resolver_mx import NEEDS_ALLOW_REMOTE
from loadtest.resolver_spec import ResolverSpec
from loadtest.routing_spec import RoutingSpec
from loadtest.server_spec import ServerSpec
from maildrill.inputs import describe_errors
from maildrill.netaddr import is_loopback
from maildrill.numbers import MAX_DURATION_S
from sinks.config import effect_request
from sinks.effects import build, kinds_for


class Parts(Protocol):
    """What the checks read of a scenario (loadtest.scenario.Scenario)."""

    @property
    def allow_remote(self) -> bool: ...
    @property
    def servers(self) -> Sequence[ServerSpec]: ...
    @property
    def routing(self) -> RoutingSpec: ...
    @property
    def campaign(self) -> CampaignSpec: ...
    @property
    def faults(self) -> Sequence[FaultEvent]: ...
    @property
    def slo(self) -> Sequence[str]: ...
    @property
    def dns(self) -> DnsSpec | None: ...
    @property
    def resolver(self) -> ResolverSpec | None: ...
    def server(self, name: str) -> ServerSpec: ...
    def dns_named(self, server: ServerSpec) -> bool: ...


def resolver_allowed(scenario: Parts) -> None:
    """A resolver the user names may answer for real names, with addresses anywhere: only
    with allow_remote (the address itself is checked by its model)."""
    if scenario.resolver is not None and not scenario.allow_remote:
        raise ValueError(NEEDS_ALLOW_REMOTE.format(server=scenario.resolver.text))


def server_names_unique(scenario: Parts) -> None:
    names = [s.name for s in scenario.servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"servers: names must be unique; repeated: {', '.join(dupes)}")
    if scenario.dns is not None and DNS_TARGET in names:
        raise ValueError(
            f"servers: {DNS_TARGET!r} names the run's DNS server in a scenario with dns: "
            "(its faults and journals); call the server something else"
        )


def routes_name_servers(scenario: Parts) -> None:
    """Every server a route names is one of the scenario's; by-stream has its routes."""
    known = {s.name for s in scenario.servers}
    routing = scenario.routing
    routed = list(routing.servers or [])
    for route in routing.streams.values():
        routed += route.servers
    for name in routed:
        if name not in known:
            raise ValueError(f"routing: unknown server {name!r}; servers are {sorted(known)}")
    if routing.policy == "by-stream" and not routing.streams:
        raise ValueError("routing: by-stream needs streams")


def faults_runnable(scenario: Parts) -> None:
    """A fault that validates is one its target takes, inside the run: the sink's own
    check of its control API request runs here, before any load starts."""
    known = {s.name for s in scenario.servers}
    for i, fault in enumerate(scenario.faults):
        _check_fault(scenario, i, fault, known)


def _check_fault(scenario: Parts, i: int, fault: FaultEvent, known: set[str]) -> None:
    if fault.target not in known and fault.target != DNS_TARGET:
        raise ValueError(f"faults[{i}].target: unknown server {fault.target!r}")
    schedule_s = scenario.campaign.build_schedule().duration_s
    if fault.at >= schedule_s:
        raise ValueError(
            f"faults[{i}].at: {fault.at:g} s is not before the end of the schedule "
            f"({schedule_s:g} s): the run may end before the fault starts"
        )
    if fault.at + (fault.duration or 0) > MAX_DURATION_S:
        raise ValueError(
            f"faults[{i}]: at + duration is {fault.at + (fault.duration or 0):g} s, more "
            f"than the limit of {MAX_DURATION_S} s (7 days)"
        )
    if fault.target == DNS_TARGET:
        resolver = scenario.resolver.text if scenario.resolver is not None else None
        if (elsewhere := senders_ask_elsewhere(resolver)) is not None:
            raise ValueError(f"faults[{i}].target: {elsewhere}")
        dns_fault_runnable(scenario.dns, i, fault, allow_remote=scenario.allow_remote)
        return
    target = scenario.server(fault.target)
    if target.postfix is not None:
        if fault.kind not in MTA_KINDS:
            raise ValueError(
                f"faults[{i}].kind: {fault.target!r} is a Postfix instance; its faults "
                f"are {', '.join(sorted(MTA_KINDS))} (or put a proxy in front of it)"
            )
        if fault.params:
            raise ValueError(
                f"faults[{i}] ({fault.kind}): takes no parameters; got "
                f"{', '.join(sorted(fault.params))}"
            )
        return
    if fault.kind in MTA_KINDS:
        raise ValueError(f"faults[{i}].kind: {fault.kind} needs a postfix server")
    kinds = kinds_for(target.sink.mode)  # a proxy (sink mode: proxy) has kinds of its own
    if fault.kind not in kinds:
        known_kinds = ", ".join(sorted(kinds))
        raise ValueError(f"faults[{i}].kind: unknown {fault.kind!r}; known: {known_kinds}")
    try:
        build(fault.kind, fault.params, kinds)
        effect_request(fault.body(), kinds)  # the request as the sink will check it
    except ValidationError as exc:
        raise ValueError(f"faults[{i}] ({fault.kind}): {describe_errors(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"faults[{i}] ({fault.kind}): {exc}") from None
    if not target.local:
        raise ValueError(
            f"faults[{i}].target: {fault.target!r} is not a maildrill sink (local: true)"
        )


def servers_name_servers(scenario: Parts) -> None:
    """A Postfix instance relays and routes to local sinks; an upstream given by name is
    another server, at an address (not a name looked up as mail is sent)."""
    known = {s.name for s in scenario.servers}

    def local_sink(name: str) -> bool:
        return name in known and scenario.server(name).local

    for server in scenario.servers:
        if server.postfix is not None:
            relay = server.postfix.relay
            if not local_sink(relay):
                raise ValueError(
                    f"servers: {server.name!r}: postfix.relay {relay!r} is not a local sink"
                )
            for domain, sink in server.postfix.routes.items():
                if not local_sink(sink):
                    raise ValueError(
                        f"servers: {server.name!r}: postfix.routes[{domain}] {sink!r} is "
                        "not a local sink"
                    )
        upstream = server.upstream_name
        if upstream is not None and (upstream not in known or upstream == server.name):
            raise ValueError(
                f"servers: {server.name!r}: sink.upstream {upstream!r} is not another server"
            )
        if upstream is not None and scenario.dns_named(scenario.server(upstream)):
            # The sinks connect to their upstream by address: a name would go to the
            # system's resolver, not to the one the scenario's senders ask.
            raise ValueError(
                f"servers: {server.name!r}: sink.upstream {upstream!r} is named by DNS "
                f"({scenario.server(upstream).host}); a backup MX or proxy relays to an "
                "address: give the upstream server one"
            )


def no_contradictions(scenario: Parts) -> None:
    """Two faults deciding whether the same listener answers cannot overlap."""
    campaign, faults = scenario.campaign, scenario.faults
    end = campaign.build_schedule().duration_s + campaign.drain_s
    windows: dict[str, list[tuple[float, float, int]]] = {}
    for i, f in enumerate(faults):
        if f.kind in EXCLUSIVE_KINDS:
            stop = f.at + f.duration if f.duration else max(end, f.at)
            windows.setdefault(f.target, []).append((f.at, stop, i))
    for spans in windows.values():
        spans.sort()
        for (_, a1, i), (b0, _, j) in itertools.pairwise(spans):
            if b0 < a1:
                raise ValueError(
                    f"faults[{j}] ({faults[j].kind} at {b0:g} s) overlaps faults[{i}] "
                    f"({faults[i].kind} until {a1:g} s) on {faults[i].target!r}"
                )


def slos_parse(scenario: Parts) -> None:
    for i, rule in enumerate(scenario.slo):
        try:
            parse_slo(rule)
        except ValueError as exc:
            raise ValueError(f"slo[{i}]: {exc}") from None


def slo_streams_known(scenario: Parts) -> None:
    """A per-stream SLO (`streams.STREAM.METRIC`) names one of the campaign's streams: a
    typo would otherwise be an SLO that can never be measured."""
    names = [s.name for s in scenario.campaign.streams]
    for i, rule in enumerate(scenario.slo):
        parts = stream_metric(parse_slo(rule)[0])
        if parts is not None and parts[0] not in names:
            raise ValueError(
                f"slo[{i}]: {rule.strip()!r}: the campaign has no stream {parts[0]!r} "
                f"(its streams: {', '.join(names)})"
            )


def dns_names_served(scenario: Parts) -> None:
    """A server named by DNS is looked up through the run's DNS server, so its name must be
    one the scenario's zones serve; a name outside them only with allow_remote (the system's
    resolver then, as for any remote host). With a named `resolver:` every name is asked of
    it, unchecked here. A local sink or Postfix instance listens on an address, not a name."""
    for s in scenario.servers:
        if not is_name(s.host):
            continue
        if scenario.dns_named(s):
            if s.local or s.postfix is not None:
                raise ValueError(
                    f"servers: {s.name!r}: host {s.host} is a DNS name; a local sink or "
                    "Postfix instance listens on an address (name it in the zone instead)"
                )
            continue
        if not scenario.allow_remote:
            zones = ", ".join(scenario.dns.zones) if scenario.dns else "none"
            raise ValueError(
                f"servers: {s.name!r}: host {s.host} is not a name the dns: zones serve "
                f"(zones: {zones}); to ask another resolver, name it (resolver: HOST[:PORT], "
                "with allow_remote: true)"
            )


def loopback_unless_allowed(scenario: Parts) -> None:
    """Servers, and the upstreams of backup MXs and proxies, on loopback only unless
    allow_remote. A server named by the run's DNS is checked when its name is looked up:
    an answer outside loopback is never sent to (loadtest.dns_route)."""
    if scenario.allow_remote:
        return
    for s in scenario.servers:
        if scenario.dns_named(s):
            continue
        if not is_loopback(s.host):
            raise ValueError(
                f"servers: {s.name!r} is at {s.host}, outside loopback; "
                "set allow_remote: true to send mail there"
            )
        source = s.postfix.source_address if s.postfix else None
        if source is not None and not is_loopback(source):
            raise ValueError(
                f"servers: {s.name!r}: postfix.source_address {source} is outside loopback; "
                "set allow_remote: true to send from it"
            )
        upstream = s.sink.upstream_address
        if upstream is not None and not is_loopback(upstream.host):
            raise ValueError(
                f"servers: {s.name!r}: sink.upstream {upstream.host} is outside loopback; "
                "set allow_remote: true to relay there"
            )


def mta_sources_distinct(scenario: Parts) -> None:
    """Each Postfix instance delivers from its own address: downstream, the address is
    how a receipt (and a provider's SPF check) tells who delivered."""
    shared = shared_source(scenario.servers)
    if shared is not None:
        address, first, second = shared
        raise ValueError(
            f"servers: {second!r}: postfix.source_address {address} is {first!r}'s too; "
            "each instance sends from its own address"
        )


def addresses_allowed(scenario: Parts) -> None:
    """Recipient and sender domains reserved or allowed; Postfix settings that route,
    listen or look up only with allow_remote."""
    policy = AddressPolicy(scenario.campaign.allowed_recipient_domains)
    for i, stream in enumerate(scenario.campaign.streams):
        for domain in stream.domains:
            if not policy.domain_allowed(domain):
                raise ValueError(
                    f"campaign.streams[{i}].domains: {domain!r} is a real domain; "
                    "list it in campaign.allowed_recipient_domains to send there"
                )
        try:
            policy.check(stream.sender, "sender")
        except AddressError as exc:
            raise ValueError(
                f"campaign.streams[{i}].sender: {exc}; a bounce goes to the sender"
            ) from None
    if scenario.allow_remote:
        return
    for server in scenario.servers:
        settings = server.postfix.settings if server.postfix else {}
        for name, value in settings.items():
            problem = setting_problem(name, str(value), allow_remote=False, defined=settings)
            if problem is not None:
                raise ValueError(f"servers: {server.name!r}: postfix.settings: {problem}")


def dns_zones_reserved(scenario: Parts) -> None:
    """The run's zones are names no one owns (or the scenario allows real ones): a zone of
    a real domain served to the MTAs under test would stand in for that domain."""
    if scenario.dns is not None:
        try:
            scenario.dns.build(allow_remote=scenario.allow_remote)
        except ValueError as exc:
            raise ValueError(f"dns: {exc}") from None


def dkim_keys_publishable(scenario: Parts) -> None:
    """Each key a Postfix instance signs with can go into the run's zone (or is not to)."""
    if not signers(scenario.servers):
        return
    zones = scenario.dns.build(allow_remote=scenario.allow_remote) if scenario.dns else ()
    problem = publishing_problem(scenario.servers, zones)
    if problem is not None:
        raise ValueError(problem)


def verify_dns_served(scenario: Parts) -> None:
    """A sink that verifies against the run's DNS server (`verify:` without a `dns`, or
    `dns: run`) needs the scenario to serve one: a `dns:` section."""
    if scenario.dns is not None:
        return
    for server in scenario.servers:
        if server.local and server.sink.run_dns:
            raise ValueError(
                f"servers: {server.name!r}: sink.verify has no dns and the scenario no dns: "
                "section to serve one (add dns: zones, or give verify.dns: HOST:PORT)"
            )


CHECKS: tuple[Callable[[Parts], None], ...] = (
    server_names_unique,
    routes_name_servers,
    resolver_allowed,
    faults_runnable,
    servers_name_servers,
    no_contradictions,
    slos_parse,
    slo_streams_known,
    dns_names_served,
    loopback_unless_allowed,
    mta_sources_distinct,
    addresses_allowed,
    dns_zones_reserved,
    dkim_keys_publishable,
    verify_dns_served,
)
