"""DKIM (RFC 6376) by dkimpy, the key records looked up through the check's Lookup.

dkimpy's verify says only True or False; the lookup wrapper here tells a key that timed
out (temperror) from one that is not published (permerror: RFC 6376 6.1.2, "no key for
signature") and from a signature that does not match its key (fail)."""

from __future__ import annotations

import logging

import dkim

from sinks.authcheck.lookup import Lookup, TempDnsError
from sinks.authcheck.verdicts import Verdict

_quiet = logging.getLogger("sinks.authcheck.dkim")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

MAX_SIGNATURES = 5  # a message with more is judged by its first five (bounded time)


class _KeyLookup:
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.timed_out = False
        self.missing = False
        self.found = False

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answers = self.lookup(name.decode("ascii", "replace"), "TXT")
        except TempDnsError:
            self.timed_out = True
            return None
        if not answers:
            self.missing = True
            return None
        self.found = True
        return answers[0].encode()


def check_dkim(lookup: Lookup, message: bytes) -> list[tuple[Verdict, str]]:
    """(verdict, d= domain) of each DKIM-Signature, topmost first; [] if none."""
    try:
        d = dkim.DKIM(message, logger=_quiet)
    except dkim.DKIMException:
        return [(Verdict.PERMERROR, "")]
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    results = []
    for idx in range(min(count, MAX_SIGNATURES)):
        keys = _KeyLookup(lookup)
        try:
            ok = d.verify(idx=idx, dnsfunc=keys)
        except dkim.DKIMException:
            # Raised before the key is fetched: a malformed signature (permerror); after
            # it (a body hash that does not match): the signature is wrong (fail).
            results.append((Verdict.FAIL if keys.found else Verdict.PERMERROR, _domain(d)))
            continue
        if ok:
            verdict = Verdict.PASS
        elif keys.timed_out:
            verdict = Verdict.TEMPERROR
        elif keys.missing:
            verdict = Verdict.PERMERROR
        else:
            verdict = Verdict.FAIL
        results.append((verdict, _domain(d)))
    return results


def _domain(d: dkim.DKIM) -> str:
    domain = getattr(d, "domain", None)
    return domain.decode("ascii", "replace").lower() if isinstance(domain, bytes) else ""
