"""A fault on the run's DNS server (`target: dns`), checked before it is sent: the kind
one of `maildrill.dns.faults`, its parameters as the DNS server's control API will check
them, every name it scopes or replaces one the run's zones serve (a typo would be a
fault that changes nothing), a `records` fault's addresses on loopback unless the scenario
has `allow_remote` (a switch is where mail goes next), and no fault at all when the
senders ask another resolver (`resolver:`; it would measure nothing). Each problem one
line naming the fault.

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
from maildrill.netaddr import is_loopback


def senders_ask_elsewhere(resolver: str | None) -> str | None:
    """Why a fault on the run's DNS server would measure nothing: the senders ask the
    scenario's `resolver:` (its text), not that server. None when they ask it."""
    if resolver is None:
        return None
    return (
        f"dns is the run's DNS server, which the senders do not ask with resolver: "
        f"{resolver}; change the records on that resolver instead (or drop resolver: to "
        "drill the dns: zones)"
    )


def dns_fault_runnable(
    dns: DnsSpec | None, i: int, fault: FaultEvent, *, allow_remote: bool = False
) -> None:
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
    check_dns_fault(dns, fault, f"faults[{i}] ({fault.kind} on dns)", allow_remote=allow_remote)


def check_dns_fault(
    dns: DnsSpec, fault: FaultEvent, where: str, *, allow_remote: bool = False
) -> None:
    """ValueError, one line starting with `where`, when the DNS server would refuse
    `fault`, it would change nothing (a name the zones do not serve), or it would send mail
    off this machine without `allow_remote` (a `records` fault's address)."""
    try:
        built = build(fault.kind, fault.params)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_errors(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if isinstance(built, Records) and fault.probability != 1.0:
        raise ValueError(f"{where}: probability does not apply (the records are served)")
    if isinstance(built, Records) and not allow_remote:
        for name, rtype, address in built.addresses():
            if not is_loopback(address):
                raise ValueError(
                    f"{where}: {name} {rtype} {address} is outside loopback: set "
                    "allow_remote: true to send mail there"
                )
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
