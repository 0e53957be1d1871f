"""What each provider refuses, and its words, after its checks at the end of DATA.

Sources, read 2026-12 (the texts as the providers send them, on one line):

- Gmail: sender guidelines (support.google.com/mail/answer/81126: all senders SPF or
  DKIM; valid forward and reverse DNS); error reference (support.google.com/a/answer/
  3726730). 550 5.7.26 for a DMARC p=reject failure ("Unauthenticated email from DOMAIN
  is not accepted due to domain's DMARC policy...") and for mail with neither SPF nor DKIM
  passing ("This mail has been blocked because the sender is unauthenticated..."), as
  quoted by Valimail's and PowerDMARC's write-ups of the 2024 rules; 421 4.7.26 (the
  temporary form, Valimail) with the "does not have authentication information" text;
  550 5.7.25 for a missing or unconfirmed PTR (the text as sisimai's RequirePTR quotes a
  Gmail bounce "in reply to end of DATA command").
- Yahoo: help.yahoo.com SLN7253, "554 5.7.9 Message not accepted for policy reasons"
  when DKIM, SPF or DMARC fails (also Word to the Wise's 2014 p=reject bounces). Yahoo
  asks SPF or DKIM of all senders, DMARC pass of bulk senders.
- Outlook.com: support.microsoft.com "Fix NDR error 550 5.7.515": high-volume senders
  must pass SPF, DKIM and DMARC (aligned); otherwise "550 5.7.515 Access denied, sending
  domain DOMAIN does not meet the required authentication level."

What each refuses, in order (the first that applies answers):

| provider | refuses                                   | reply          |
|----------|-------------------------------------------|----------------|
| gmail    | DMARC fail with p=reject                  | 550 5.7.26     |
|          | neither SPF nor DKIM passes, one temperror| 421 4.7.26     |
|          | neither SPF nor DKIM passes               | 550 5.7.26     |
|          | no PTR, or the PTR name does not map back | 550 5.7.25     |
| yahoo    | DMARC fail with p=reject                  | 554 5.7.9      |
|          | neither SPF nor DKIM passes               | 554 5.7.9      |
| outlook  | SPF, DKIM or DMARC does not pass          | 550 5.7.515    |

A PTR whose name is not the HELO name (FCrDNS holds) is journaled as a ptr fail but
refused by none: Gmail asks forward-confirmation, not a HELO match. Quarantine is not a
refusal (the message would go to spam): it is accepted and journaled as a DMARC fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from sinks.authcheck.verdicts import AuthVerdicts, Verdict
from sinks.replies import Reply

Provider = Literal["gmail", "yahoo", "outlook", "none"]

# The enhanced codes of each provider's refusals (the table above): what tells a refusal for
# authentication from any other a sink sends (loadtest.analysis.auth counts them).
REFUSAL_CODES: Mapping[str, frozenset[str]] = {
    "gmail": frozenset({"5.7.26", "4.7.26", "5.7.25"}),
    "yahoo": frozenset({"5.7.9"}),
    "outlook": frozenset({"5.7.515"}),
}

_GMAIL_DMARC = (
    "Unauthenticated email from {domain} is not accepted due to domain's DMARC policy. "
    "Please contact the administrator of {domain} domain. If this was a legitimate mail "
    "please visit https://support.google.com/mail/answer/2451690 to learn about the DMARC "
    "initiative. - gsmtp"
)
_GMAIL_UNAUTHENTICATED = (
    "This mail has been blocked because the sender is unauthenticated. Gmail requires all "
    "senders to authenticate with either SPF or DKIM. For instructions on setting up "
    "authentication, go to https://support.google.com/mail/answer/81126#authentication "
    "- gsmtp"
)
_GMAIL_TEMPORARY = (
    "This message does not have authentication information or fails to pass "
    "authentication checks. To best protect our users from spam, the message has been "
    "blocked. Please visit https://support.google.com/mail/answer/81126#authentication "
    "for more information. - gsmtp"
)
_GMAIL_PTR = (
    "[{peer}] The IP address sending this message does not have a PTR record setup, or "
    "the corresponding forward DNS entry does not point to the sending IP. As a policy, "
    "Gmail does not accept messages from IPs with missing PTR records. For more "
    "information, go to https://support.google.com/mail/answer/81126#ip-practices - gsmtp"
)
_YAHOO = "Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes"
_OUTLOOK = "Access denied, sending domain {domain} does not meet the required authentication level."


def refusal(provider: Provider, result: AuthVerdicts, *, peer: str, domain: str) -> Reply | None:
    """The provider's reply to a message with these verdicts; None: it is accepted.

    `domain` is the RFC5322.From domain (the envelope's when the From is unreadable)."""
    if provider == "none":
        return None
    authenticated = result.authenticated
    reject = result.dmarc is Verdict.FAIL and result.dmarc_policy == "reject"
    fields = {"domain": domain, "peer": peer}
    if provider == "gmail":
        if reject:
            return Reply(550, "5.7.26", _GMAIL_DMARC.format(**fields))
        if not authenticated:
            if Verdict.TEMPERROR in (result.spf, result.dkim):
                return Reply(421, "4.7.26", _GMAIL_TEMPORARY)
            return Reply(550, "5.7.26", _GMAIL_UNAUTHENTICATED.format(**fields))
        if result.ptr is not Verdict.TEMPERROR and not result.fcrdns:
            return Reply(550, "5.7.25", _GMAIL_PTR.format(**fields))
        return None
    if provider == "yahoo":
        if reject or not authenticated:
            return Reply(554, "5.7.9", _YAHOO)
        return None
    passes = (result.spf, result.dkim, result.dmarc) == (Verdict.PASS,) * 3
    return None if passes else Reply(550, "5.7.515", _OUTLOOK.format(**fields))
