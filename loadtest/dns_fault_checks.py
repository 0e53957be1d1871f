"""A fault on the run's DNS server (`target: dns`), checked before it is sent: the kind
one of `maildrill.dns.faults`, its parameters as the DNS server's control API will check
them, and every name it scopes or replaces one the run's zones serve (a typo would be a
fault that changes nothing). Each problem one line naming the fault.

The same rules for a scenario's faults (`dns_fault_runnable`, before any load) and for
one commanded live from the Failover tab (`check_dns_fault`, before it reaches the DNS
server: loadtest.failover_tab.dns_live)."""

from __future__ import annotations

from pydantic import ValidationError

from loadtest.dns_spec import DnsSpec
from loadtest.fault_event import FaultEvent
from maildrill.dns.faults import KINDS, Records, build
from maildrill.dns.zone import Zone
from maildrill.inputs import describe_errors


def dns_fault_runnable(dns: DnsSpec | None, i: int, fault: FaultEvent) -> None:
    if dns is None:
        raise ValueError(
            f"faults[{i}].target: dns is the run's DNS server, and the scenario has no dns: "
            "section to serve one"
        )
    if fault.kind not in KINDS:
        raise ValueError(
            f"faults[{i}].kind: {fault.kind!r} is not a DNS fault; known: "
            f"{', '.join(sorted(KINDS))}"
        )
    check_dns_fault(dns, fault, f"faults[{i}] ({fault.kind} on dns)")


def check_dns_fault(dns: DnsSpec, fault: FaultEvent, where: str) -> None:
    """ValueError, one line starting with `where`, when the DNS server would refuse
    `fault` or it would change nothing (a name the zones do not serve)."""
    try:
        built = build(fault.kind, fault.params)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_errors(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if isinstance(built, Records) and fault.probability != 1.0:
        raise ValueError(f"{where}: probability does not apply (the records are served)")
    names = built.names() if isinstance(built, Records) else built.params.names
    zones = dns.build(allow_remote=True)  # the names' policy is dns_zones_reserved's
    served = served_names(zones)
    for name in names:
        if name not in served:
            origins = ", ".join(z.origin for z in zones)
            raise ValueError(f"{where}: {name} is not a name the run's zones ({origins}) serve")


def served_names(zones: tuple[Zone, ...]) -> set[str]:
    """Every name with records, and each zone's apex (its SOA and NS are served)."""
    return {z.origin for z in zones} | {n for z in zones for n in z.names()}
