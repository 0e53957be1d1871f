"""SMTP replies as values, so behaviours return data and the protocol layer sends it."""

from __future__ import annotations

import re
from typing import NamedTuple

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


class Reply(NamedTuple):
    """One SMTP reply: code, enhanced status code (RFC 3463, may be empty) and text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    @property
    def closes(self) -> bool:
        """421 means the server closes the channel (RFC 5321 3.8)."""
        return self.code == 421

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @classmethod
    def parse(cls, line: str) -> Reply:
        """Parse '451 4.7.1 text' (enhanced code optional) into a Reply."""
        code_text, _, rest = line.strip().partition(" ")
        if len(code_text) != 3 or not code_text.isdigit():
            raise ValueError(f"not an SMTP reply: {line!r}")
        first, _, tail = rest.partition(" ")
        if _ENHANCED.match(first):
            return cls(int(code_text), first, tail)
        return cls(int(code_text), "", rest)


def classify(code: int) -> str:
    """Outcome name by reply code class: never by text."""
    if 200 <= code < 400:
        return "accepted"
    if 400 <= code < 500:
        return "deferred"
    return "rejected"


# Provider-style throttle replies, texts as the providers send them (peer filled in).
PRESETS: dict[str, Reply] = {
    "gmail": Reply(
        421,
        "4.7.28",
        "[{peer}] Our system has detected an unusual rate of unsolicited mail originating "
        "from your IP address. To protect our users from spam, mail sent from your IP "
        "address has been temporarily rate limited. Please visit "
        "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our "
        "Bulk Email Senders Guidelines.",
    ),
    "yahoo": Reply(
        421,
        "4.7.0",
        "[TSS04] Messages from {peer} temporarily deferred due to unexpected volume or "
        "user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    ),
    "outlook": Reply(
        451,
        "4.7.650",
        "The mail server [{peer}] has been temporarily rate limited due to IP reputation. "
        "For e-mail delivery information, see https://aka.ms/postmaster (S775)",
    ),
    "postfix": Reply(450, "4.7.1", "Error: too much mail from {peer}"),
}

# What providers answer for an address they have no mailbox for ({address} filled in), each
# at the stage it answers it (sinks.effects.mailboxes): the texts as the providers send them,
# on one line (Gmail's comes as four "550-5.1.1" lines). Only Gmail and Postfix say 5.1.1:
# Outlook.com says 5.5.0 at RCPT; Yahoo refuses the whole message after DATA with 552 and
# no enhanced code (sisimai's Yahoo rules: "in reply to end of DATA command").
NO_SUCH_USER: dict[str, Reply] = {
    "gmail": Reply(
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces. "
        "Learn more at https://support.google.com/mail/?p=NoSuchUser - gsmtp",
    ),
    "yahoo": Reply(552, "", "1 Requested mail action aborted, mailbox not found"),
    "outlook": Reply(
        550, "5.5.0", "Requested action not taken: mailbox unavailable (S2017062302)."
    ),
    "postfix": Reply(
        550,
        "5.1.1",
        "<{address}>: Recipient address rejected: User unknown in virtual mailbox table",
    ),
}

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Error: too many connections, try again later")
TOO_MANY_MESSAGES = Reply(421, "4.7.0", "Error: too many messages in this connection")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Error: message file too big")
BUSY = Reply(421, "4.3.2", "Service not available, closing transmission channel")
GREYLISTED = Reply(450, "4.2.0", "Greylisted, please try again in {delay} seconds")
ACCEPTED = Reply(250, "2.0.0", "Ok: queued as {queue_id}")
# A backup MX that could not store a message (Postfix's words): the client keeps it.
QUEUE_WRITE_ERROR = Reply(451, "4.3.0", "Error: queue file write error")

# The sink's own limits on hostile or broken clients (SinkConfig), as Postfix words them.
TOO_MANY_FROM_PEER = Reply(421, "4.7.0", "Error: too many connections from {peer}")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Error: too many errors")
TIMED_OUT = Reply(421, "4.4.2", "Error: timeout exceeded")
SESSION_TOO_LONG = Reply(421, "4.4.2", "Error: session time limit exceeded")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Error: authentication exchange line is too long")
