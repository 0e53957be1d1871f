"""What a refusal of a recipient says about it, decided by reply code and enhanced status
code (RFC 3463), never by text: hard or soft, its class, and whether the address is to be
suppressed.

A *hard bounce* is a 5xx for a recipient, a *soft bounce* a 4xx. Its *class* is the
enhanced code's class and subject, `5.1.x` (addressing) or `5.7.x` (policy), or `5.x.x`
when the server sent no enhanced code. The sender (loadtest.driver) suppresses an address
after a hard bounce that is about the address, and the analysis
(loadtest.analysis.bounces) counts by the same rules.

Which hard bounces say the address is bad cannot be read from the subject alone: Gmail
says 5.1.1 (addressing), Outlook.com 5.5.0 (protocol), Yahoo 552 with no enhanced code at
all, each meaning "no such mailbox". What can be read is which refuse the *message* or the
*sender* rather than the mailbox: the mail system (x.3.x, e.g. 552 5.3.4 message too big),
the content (x.6.x) and policy (x.7.x: a spam block, an IP on a blocklist, SPF). Those do
not suppress, as ESPs keep blocks apart from bounces; every other hard bounce for the
recipient does. A refusal before any recipient was named (greeting, EHLO, MAIL) says
nothing of an address and never suppresses.
"""

from __future__ import annotations

from typing import Literal

# Enhanced-code subjects that refuse the message or the sender, not the mailbox.
NOT_ABOUT_THE_ADDRESS = frozenset({"3", "6", "7"})
# Stages at which a reply applies to recipients: their own RCPT, or the message after them.
RECIPIENT_STAGES = frozenset({"rcpt", "data", "dot"})

Severity = Literal["hard", "soft"]


def severity(code: int) -> Severity | None:
    """hard for a 5xx, soft for a 4xx, None for anything else (no refusal)."""
    if 500 <= code < 600:
        return "hard"
    if 400 <= code < 500:
        return "soft"
    return None


def bounce_class(code: int, enhanced: str) -> str:
    """`5.1.x` from 5.1.1: the enhanced code's class and subject; `5.x.x` when the reply
    had none (the reply code's class stands for it)."""
    parts = enhanced.split(".")
    if len(parts) == 3 and parts[0] == str(code)[:1]:
        return f"{parts[0]}.{parts[1]}.x"
    return f"{str(code)[:1]}.x.x"


def status_key(code: int, enhanced: str) -> str:
    """'550 5.1.1', or '552' without an enhanced code: how refusals are grouped."""
    return f"{code} {enhanced}" if enhanced else str(code)


def suppresses(stage: str, code: int, enhanced: str) -> bool:
    """Whether this reply, for a recipient, puts its address on the suppression list."""
    if severity(code) != "hard" or stage not in RECIPIENT_STAGES:
        return False
    parts = enhanced.split(".")
    subject = parts[1] if len(parts) == 3 else ""
    return subject not in NOT_ABOUT_THE_ADDRESS
