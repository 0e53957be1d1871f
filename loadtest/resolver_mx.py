"""The MX sets of a scenario's `{mx: DOMAIN}` servers read from its named `resolver:`, once,
as maildrill loads the scenario file: I/O, so it is not in the model (a scenario read again
from a run directory, by the analysis or a Locust worker, must not ask anything).

The raw data comes back with each entry made one server per MX host (as
`dns_servers.expand_mx` makes them from the zones), so the run directory's scenario.yaml
keeps the set as it was read and everything after reads that. A resolver given wrongly, or
without `allow_remote: true`, is never asked: the same one-line error the model gives.
A lookup that fails (no answer, NXDOMAIN, no MX) is bad input too: a run needs its servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from loadtest.dns_servers import expand_mx, unexpanded_mx
from loadtest.fault_event import DNS_TARGET
from loadtest.resolver_spec import ResolverSpec
from loadtest.strict_model import StrictModel
from maildrill.dns.resolver import Status
from maildrill.inputs import describe_errors

NEEDS_ALLOW_REMOTE = (
    "resolver: {server} needs allow_remote: true (a resolver you name may answer for real "
    "names, with addresses outside loopback; maildrill run then asks for --yes)"
)

# The whole model's check of the raw data (Scenario.model_validate): raises ValidationError.
Check = Callable[[Any], object]
# Asked with the resolver's HOST:PORT just before it is first asked: raises to refuse.
Consent = Callable[[str], None]


class _Named(StrictModel):
    """The `resolver:` key alone, so its errors read as the whole scenario's do."""

    resolver: ResolverSpec


def read_mx_sets(data: Any, check: Check | None = None, consent: Consent | None = None) -> Any:
    """`data` with its `mx:` entries expanded through its `resolver:`; as it is without
    either. ValueError, one line, for a resolver that may not or cannot be asked. Before
    any query: `check` validates the rest of the scenario (`stand_in`: each MX set a
    stand-in), so a file with other mistakes asks nothing; then `consent` (`maildrill run`
    asks for --yes) may refuse."""
    if not isinstance(data, dict) or data.get("resolver") is None or not unexpanded_mx(data):
        return data
    try:
        spec = _Named.model_validate({"resolver": data["resolver"]}).resolver
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None
    if data.get("allow_remote") is not True:
        raise ValueError(NEEDS_ALLOW_REMOTE.format(server=spec.text))
    if check is not None:
        try:
            check(stand_in(data))
        except ValidationError as exc:
            raise ValueError(describe_errors(exc)) from None
    if consent is not None:
        consent(spec.text)
    resolver = spec.resolver()

    def mx_of(domain: str) -> list[tuple[int, str]]:
        lookup = resolver.mx(domain)
        if lookup.status is Status.TEMPERROR:
            raise ValueError(f"mx {domain}: resolver {spec.text} gave no answer ({lookup.detail})")
        return [(mx.preference, mx.host) for mx in lookup.mx()] if lookup.ok else []

    return expand_mx(data, mx_of)


def stand_in(data: dict[str, Any]) -> Any:
    """The raw data with each `mx:` entry one server named by its domain (its domain checked
    as a host name), and one more for each name that the routes, the faults or a sink's
    upstream give and no server has (an MX host, perhaps, not known before the lookup):
    what validates this way fails after the lookup only for its MX sets."""
    referred = _names_referred(data)
    counter = iter(range(1, 1_000_000))

    def placeholders(domain: str) -> list[tuple[int, str]]:
        return [(10 * next(counter), domain)]

    expanded = expand_mx(data, placeholders)
    servers = expanded["servers"]
    entry = next(e for e in data["servers"] if isinstance(e, dict) and "mx" in e)
    known = {s.get("name") for s in servers if isinstance(s, dict)}
    for name in referred - known:
        servers.append({**entry, "mx": entry["mx"], "name": name, "host": entry["mx"],
                        "priority": 10 * next(counter)})  # fmt: skip
    return expanded


def _names_referred(data: dict[str, Any]) -> set[str]:
    """The server names the raw data's routes, faults and sinks' upstreams give."""

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    def table(value: Any) -> dict[Any, Any]:
        return value if isinstance(value, dict) else {}

    routing = table(data.get("routing"))
    names: list[Any] = list(listed(routing.get("servers")))
    for route in table(routing.get("streams")).values():
        names += listed(table(route).get("servers"))
    names += [table(fault).get("target") for fault in listed(data.get("faults"))]
    names += [table(table(s).get("sink")).get("upstream") for s in listed(data["servers"])]
    return {n for n in names if isinstance(n, str) and n != DNS_TARGET}
