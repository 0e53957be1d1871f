"""Whether and when a message is tried again after a failed attempt: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.outcomes import Outcome, Phase
from loadtest.routing import Result


@dataclass(frozen=True, slots=True)
class Retry:
    after_s: float
    avoid: str | None  # the server to avoid next time, when the policy has another


@dataclass(frozen=True)
class RetryPolicy:
    """4xx and connection trouble are retried with exponential backoff; 5xx is final.

    A timeout or disconnect after the final dot is ambiguous (RFC 1047): the server may
    have the message. It is retried only with `retry_after_dot`, and then the attempt
    record says the message may be duplicated.
    """

    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_s: float = 30.0
    retry_after_dot: bool = False
    defer_to_next: bool = False  # a 4xx for the message (RCPT, DATA, dot) also tries elsewhere

    def after(self, attempt: int) -> float:
        """Backoff before attempt `attempt + 1` (attempts count from 1)."""
        try:
            wait = self.backoff_s * self.backoff_factor ** (attempt - 1)
        except OverflowError:  # a factor of 10 by the 400th attempt: past any maximum
            return self.max_backoff_s
        return min(self.max_backoff_s, wait)

    def decide(self, server: str, result: Result, attempt: int) -> Retry | None:
        if result.outcome in (Outcome.ACCEPTED, Outcome.REJECTED):
            return None
        if attempt >= self.max_attempts:
            return None
        if is_ambiguous(result) and not self.retry_after_dot:
            return None
        if result.server_failure:
            # As an MTA walks its MX list: the next server at once, no backoff.
            return Retry(after_s=0.0, avoid=server)
        # A 4xx about this message or recipient: later, from the preferred server again.
        return Retry(after_s=self.after(attempt), avoid=server if self.defer_to_next else None)


def is_ambiguous(result: Result) -> bool:
    """The message was sent and no final reply came: the server may have it."""
    return result.phase is Phase.DOT and result.outcome in (Outcome.TIMEOUT, Outcome.DROPPED)
