"""All checks of one message, in the order a receiver makes them, each bounded in time."""

from __future__ import annotations

from sinks.authcheck.dkim_check import check_dkim
from sinks.authcheck.dmarc import check_dmarc
from sinks.authcheck.lookup import Lookup
from sinks.authcheck.ptr_check import check_ptr
from sinks.authcheck.spf_check import check_spf
from sinks.authcheck.verdicts import AuthVerdicts, Verdict

# Best first: the DKIM verdict of a message with several signatures is its best one's.
_DKIM_RANK = [Verdict.PASS, Verdict.TEMPERROR, Verdict.FAIL, Verdict.PERMERROR]


def verify_message(
    lookup: Lookup,
    *,
    peer_ip: str,
    helo: str,
    mail_from: str,
    message: bytes,
    spf_timeout: float = 5.0,
) -> AuthVerdicts:
    """SPF, DKIM, DMARC and PTR verdicts of `message` received from `peer_ip`.

    Blocking (pyspf and dkimpy are): the sink calls it in a worker thread."""
    spf, spf_domain, spf_why = check_spf(lookup, peer_ip, mail_from, helo, spf_timeout)
    signatures = check_dkim(lookup, message)
    if signatures:
        dkim, dkim_domain = min(signatures, key=lambda s: _DKIM_RANK.index(s[0]))
    else:
        dkim, dkim_domain = Verdict.NONE, ""
    dmarc, policy, dmarc_why = check_dmarc(lookup, message, spf, spf_domain, signatures)
    ptr, fcrdns, ptr_why = check_ptr(lookup, peer_ip, helo)
    why = []
    if spf is not Verdict.PASS:
        why.append(f"spf {spf_domain}: {spf_why or spf.value}")
    if dkim is not Verdict.PASS:
        why.append(f"dkim {dkim_domain or '-'}: {dkim.value}")
    if dmarc_why:
        why.append(f"dmarc: {dmarc_why}")
    if ptr_why:
        why.append(f"ptr: {ptr_why}")
    return AuthVerdicts(
        spf=spf,
        spf_domain=spf_domain,
        dkim=dkim,
        dkim_domain=dkim_domain,
        dmarc=dmarc,
        dmarc_policy=policy,
        ptr=ptr,
        fcrdns=fcrdns,
        detail="; ".join(why)[:300],
    )


def unverified(why: str) -> AuthVerdicts:
    """The result of a message whose checks did not finish in the sink's time bound:
    temperror throughout, as a receiver whose DNS is too slow reports it."""
    t = Verdict.TEMPERROR
    return AuthVerdicts(t, "", t, "", t, "", t, fcrdns=False, detail=why)
