"""What one SMTP attempt came to, decided by reply code and exception type, never by text."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"  # 2xx after the final dot
    DEFERRED = "deferred"  # 4xx at any stage
    REJECTED = "rejected"  # 5xx at any stage
    REFUSED = "refused"  # TCP connection refused
    TIMEOUT = "timeout"  # no answer in time (connect, banner, command, final dot)
    DROPPED = "dropped"  # connection closed or reset by the server
    INTERRUPTED = "interrupted"  # the harness stopped mid-attempt (end of run, Ctrl-C)


class Phase(enum.StrEnum):
    """How far an attempt got; the last one reached is recorded."""

    DNS = "dns"  # looking the server's name up (loadtest.dns_route): no connection yet
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DOT = "dot"  # the message is sent; waiting for the final reply


def outcome_of_code(code: int) -> Outcome:
    if 200 <= code < 400:
        return Outcome.ACCEPTED
    if 400 <= code < 500:
        return Outcome.DEFERRED
    return Outcome.REJECTED


# Phases where a 4xx says the server, not the message or the recipient, is in trouble.
SERVER_PHASES = frozenset({Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.MAIL})
