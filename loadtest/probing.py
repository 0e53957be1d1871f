"""What an aiosmtplib failure means, shared by `maildrill check` and the health prober.

A failure is classified by exception type and reply code, never by reply text, into the
same outcomes the attempts journal uses (`loadtest.outcomes`). aiosmtplib wraps everything
that goes wrong while connecting in one exception; its cause tells a refused TCP connect
(phase `connect`) from a server that took the connection but sent no banner, or a bad one
(phase `greeting`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from aiosmtplib import (
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from loadtest.outcomes import Outcome, Phase, outcome_of_code

# What the prober and the check catch: aiosmtplib's tree, sockets and TLS.
ERRORS = (SMTPException, OSError, ssl.SSLError, TimeoutError)


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    phase: Phase  # the phase the failure happened in
    code: int  # the server's reply code, 0 when there was no reply
    error: str  # for people: the exception and its message, one line

    @property
    def summary(self) -> str:
        """'refused', 'timeout in greeting', '421 in greeting'."""
        what = str(self.code) if self.code else self.outcome.value
        return what if self.phase is Phase.CONNECT else f"{what} in {self.phase.value}"


def classify(exc: BaseException, phase: Phase) -> Failure:
    """The outcome of `exc` raised while in `phase`."""
    cause = exc.__cause__
    if phase is Phase.CONNECT and (
        isinstance(exc, SMTPConnectResponseError)
        or isinstance(cause, SMTPTimeoutError | SMTPServerDisconnected)
    ):
        phase = Phase.GREETING  # TCP was accepted; the banner was late, absent or not 220
    if isinstance(exc, SMTPResponseException):
        return Failure(outcome_of_code(exc.code), phase, exc.code, _one_line(exc))
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError is one too
        outcome = Outcome.TIMEOUT
    elif isinstance(exc, SMTPConnectError) and phase is Phase.CONNECT:
        outcome = Outcome.TIMEOUT if isinstance(cause, TimeoutError) else Outcome.REFUSED
    elif isinstance(exc, ConnectionRefusedError):
        outcome = Outcome.REFUSED
    else:  # disconnected, reset, TLS failure, an aiosmtplib error without a reply
        outcome = Outcome.DROPPED
    return Failure(outcome, phase, 0, _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
