"""Which hosts are this machine: the one test behind every "loopback only unless
allow_remote" rule (targets, listeners, relays, probes)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
