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

from typing import Any

from pydantic import ValidationError

from loadtest.dns_servers import expand_mx, unexpanded_mx
from loadtest.resolver_spec import ResolverSpec
from loadtest.strict_model import StrictModel
from maildrill.dns.resolver import Status
from maildrill.inputs import describe_errors

NEEDS_ALLOW_REMOTE = (
    "resolver: {server} needs allow_remote: true (a resolver you name may answer for real "
    "names, with addresses outside loopback; maildrill run then asks for --yes)"
)


class _Named(StrictModel):
    """The `resolver:` key alone, so its errors read as the whole scenario's do."""

    resolver: ResolverSpec


def read_mx_sets(data: Any) -> Any:
    """`data` with its `mx:` entries expanded through its `resolver:`; as it is without
    either. ValueError, one line, for a resolver that may not or cannot be asked."""
    if not isinstance(data, dict) or data.get("resolver") is None or not unexpanded_mx(data):
        return data
    try:
        spec = _Named.model_validate({"resolver": data["resolver"]}).resolver
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None
    if data.get("allow_remote") is not True:
        raise ValueError(NEEDS_ALLOW_REMOTE.format(server=spec.text))
    resolver = spec.resolver()

    def mx_of(domain: str) -> list[tuple[int, str]]:
        lookup = resolver.mx(domain)
        if lookup.status is Status.TEMPERROR:
            raise ValueError(f"mx {domain}: resolver {spec.text} gave no answer ({lookup.detail})")
        return [(mx.preference, mx.host) for mx in lookup.mx()] if lookup.ok else []

    return expand_mx(data, mx_of)
