"""A DNS fault's window (faults-dns.csv, `target: dns`) in the failover analysis.

The run's DNS server journals its faults in a sink's columns, so `fault_windows` reads
its windows as it reads a sink's, and each is measured like one: the fault's onset and
clear from the DNS server's own clock, and what the mail did meanwhile (the recovery of
the accepted rate, the longest gap with nothing accepted, latency before, during and
after). What it is not is a server the senders send to: detection (a failed attempt at
the target), failover (accepted by *another* server) and failback (accepted again by the
target) would be measured against a server named `dns` that takes no mail, and read as a
failover in no time. Those are cleared here (null), and the health probes' timings too
(nothing probes the DNS server); how long senders took to follow a DNS change is measured
from the attempts journal's addresses in dns_follow.py, not here.
"""

from __future__ import annotations

from loadtest.analysis.summary_model import Failover
from loadtest.fault_event import DNS_TARGET

ONSET_SOURCE = "DNS server journal"


def is_dns_window(target: str, dns_served: bool) -> bool:
    """A window of the run's DNS server: its target `dns` in a run that served DNS (a
    scenario with `dns:` has no server of that name)."""
    return dns_served and target == DNS_TARGET


def as_dns_fault(failover: Failover) -> Failover:
    """The failover figures of a DNS fault's window, those about its target cleared."""
    return failover.model_copy(
        update={
            "detection_s": None,
            "failover_s": None,
            "failback_s": None,
            "monitor_detection_s": None,
            "monitor_recovery_s": None,
            "onset_source": ONSET_SOURCE,
        }
    )
