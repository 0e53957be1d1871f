"""The verdicts, named as RFC 8601 (Authentication-Results) names them, and one message's."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    """One check's result (RFC 8601 2.7; RFC 7208 2.6 adds neutral and softfail for SPF).

    PTR has no RFC result names; it borrows these: pass (the name maps back to the
    address and matches the HELO name), fail (no match), none (no PTR record)."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    NEUTRAL = "neutral"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class AuthVerdicts:
    """What the checks found for one message: the receipt's columns (maildrill.records)."""

    spf: Verdict
    spf_domain: str  # the domain SPF checked: MAIL FROM's, or HELO's for a null sender
    dkim: Verdict  # the best signature's: pass if any passes
    dkim_domain: str  # d= of the signature that decided dkim ("" when none)
    dmarc: Verdict
    dmarc_policy: str  # p= of the From domain's record (none, quarantine, reject; "")
    ptr: Verdict
    fcrdns: bool = False  # the PTR name maps back to the address (whatever the HELO)
    detail: str = ""  # why, in a few words per check that did not pass

    @property
    def authenticated(self) -> bool:
        """SPF or DKIM passes (what Gmail asks of every sender)."""
        return Verdict.PASS in (self.spf, self.dkim)
