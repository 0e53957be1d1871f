"""A sender's DNS answers kept for their TTL, and the MX preference order: pure, no I/O.

A real MTA does not ask the DNS for every message: it keeps an answer as long as its TTL
says, so a record that changes is followed only once the cached answer expires. That delay
is what a DNS failover drill measures, so the cache here behaves as a resolver's does: an
answer is served until `fetched + ttl` on the injected clock, then asked again. Failures
(SERVFAIL, timeout, NXDOMAIN) are never kept: the next message asks again, as Postfix's
retries reach the resolver again.

One cache per Locust process (per `loadtest.client.Sender`'s resolver), like the cache of
the resolver an MTA host runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from maildrill.dns.resolver import Lookup


@dataclass(frozen=True, slots=True)
class Answer:
    """A lookup as the cache holds it: `at` when it was received (epoch seconds, for the
    journal), `expires` on the cache's clock."""

    lookup: Lookup
    at: float
    expires: float


@dataclass
class AnswerCache:
    """(name, type) -> the last good answer, until its TTL runs out on `clock`."""

    clock: Callable[[], float] = time.monotonic
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def get(self, name: str, rtype: str) -> Answer | None:
        """The cached answer, or None when there is none or it has expired."""
        key = (name.lower().rstrip("."), rtype)
        answer = self.answers.get(key)
        if answer is None:
            return None
        if self.clock() >= answer.expires:
            del self.answers[key]
            return None
        return answer

    def put(self, lookup: Lookup, at: float) -> Answer:
        """Keep a good answer for its TTL (a TTL of 0: used once, not kept); a failure is
        returned as an Answer that is not kept."""
        expires = self.clock() + (lookup.ttl or 0)
        answer = Answer(lookup, at, expires)
        if lookup.ok and lookup.ttl:
            self.answers[(lookup.name, lookup.rtype)] = answer
        return answer


def by_preference(
    names: Sequence[str],
    preference: Mapping[str, int],
    rng: random.Random,
    shuffled: Collection[str] | None = None,
) -> list[str]:
    """`names` lowest preference first; among equal preferences those in `shuffled` (all,
    by default) in an order drawn from `rng` (RFC 5321 section 5.1: a sender randomises
    equal-preference MX hosts to spread the load; seeded, so a run is repeatable), the
    others first and in their given order."""
    pool = set(names if shuffled is None else shuffled)
    keyed = [
        (preference[n], rng.random() if n in pool else -1.0, i, n) for i, n in enumerate(names)
    ]
    return [n for *_, n in sorted(keyed)]
