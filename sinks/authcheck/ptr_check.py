"""Reverse DNS of the connecting address: its PTR name, that name's address back
(forward-confirmed reverse DNS, FCrDNS), and whether it is the name the client gave in
HELO, as Gmail and Outlook ask of senders."""

from __future__ import annotations

import ipaddress

from sinks.authcheck.lookup import Lookup, TempDnsError
from sinks.authcheck.verdicts import Verdict

MAX_PTR_NAMES = 10  # RFC 7208 5.5 bounds its own PTR walk the same way


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def check_ptr(lookup: Lookup, ip: str, helo: str) -> tuple[Verdict, bool, str]:
    """(verdict, forward-confirmed, why). pass: a PTR name maps back to `ip` and is the
    HELO name; fail: PTR names exist but none both maps back and is the HELO name
    (forward-confirmed says whether one maps back); none: no PTR record."""
    try:
        names = lookup(reverse_name(ip), "PTR")[:MAX_PTR_NAMES]
    except TempDnsError:
        return Verdict.TEMPERROR, False, "PTR lookup failed"
    if not names:
        return Verdict.NONE, False, f"no PTR for {ip}"
    rtype = "AAAA" if ":" in ip else "A"
    confirmed = []
    try:
        for name in names:
            addresses = {str(ipaddress.ip_address(a)) for a in lookup(name, rtype)}
            if str(ipaddress.ip_address(ip)) in addresses:
                confirmed.append(name.lower().rstrip("."))
    except TempDnsError:
        return Verdict.TEMPERROR, False, "forward lookup of the PTR name failed"
    if not confirmed:
        return Verdict.FAIL, False, f"{names[0]} does not resolve to {ip}"
    if helo.lower().rstrip(".") in confirmed:
        return Verdict.PASS, True, ""
    return Verdict.FAIL, True, f"HELO {helo} is not {confirmed[0]}"
