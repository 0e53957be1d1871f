"""SPF (RFC 7208) by pyspf, its lookups sent to the check's own Lookup.

pyspf resolves through a module-level function (`spf.DNSLookup`, dnspython's default
resolver: the system's). It is replaced once, on import, by one that asks the Lookup the
calling thread set for this check, and fails (temperror) when none is set: pyspf can then
never reach the system resolver, and checks in parallel threads each ask their own.
"""

from __future__ import annotations

import threading
from typing import Any

import spf

from sinks.authcheck.lookup import Lookup, TempDnsError
from sinks.authcheck.verdicts import Verdict

_local = threading.local()


def _lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> list[Any]:
    """pyspf's DNSLookup contract: [((name, type), data), ...]; data as pyspf reads it."""
    lookup: Lookup | None = getattr(_local, "lookup", None)
    if lookup is None:
        raise spf.TempError("DNS: no lookup set for this thread")
    try:
        answers = lookup(name, qtype)
    except TempDnsError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    out: list[Any] = []
    for data in answers:
        if qtype in ("TXT", "SPF"):
            out.append(((name, qtype), [data.encode()]))
        elif qtype == "MX":
            pref, _, exchange = data.partition(" ")
            out.append(((name, qtype), (int(pref), exchange)))
        else:
            out.append(((name, qtype), data))
    return out


spf.DNSLookup = _lookup

_VERDICTS = {v.value: v for v in Verdict}


def check_spf(
    lookup: Lookup, ip: str, mail_from: str, helo: str, timeout: float
) -> tuple[Verdict, str, str]:
    """(verdict, the domain checked, pyspf's explanation) for a message from `ip`.

    The identity is MAIL FROM's; for a null sender (bounces) it is postmaster@HELO
    (RFC 7208 2.4)."""
    sender = mail_from if "@" in mail_from else f"postmaster@{helo}"
    domain = sender.rpartition("@")[2].lower()
    _local.lookup = lookup
    try:
        result, explanation = spf.check2(i=ip, s=sender, h=helo, timeout=timeout)
    finally:
        _local.lookup = None
    return _VERDICTS.get(result, Verdict.PERMERROR), domain, str(explanation)
