"""The sender's suppression list: an address that hard-bounced is never sent to again.

An ESP keeps one so a dead mailbox is not mailed twice (every repeat bounce costs
reputation). Here it lives in one sending process (loadtest.driver.Driver) for the run:
with Locust workers each keeps its own, so an address can bounce once per worker before
each has learnt it (README, "Bounces and suppression"). Addresses are kept in lower case:
providers look mailboxes up without regard to case. Which refusals suppress is
loadtest.bounce_codes.suppresses.
"""

from __future__ import annotations

from collections.abc import Iterable


class Suppression:
    """Addresses never to send to again in this run."""

    __slots__ = ("addresses",)

    def __init__(self, addresses: Iterable[str] = ()) -> None:
        self.addresses: set[str] = {a.lower() for a in addresses}

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.lower() in self.addresses

    def __len__(self) -> int:
        return len(self.addresses)

    def add(self, address: str) -> bool:
        """Suppress `address`; False when it already was."""
        key = address.lower()
        if key in self.addresses:
            return False
        self.addresses.add(key)
        return True


# The `outcome` of an attempts-journal row that is no SMTP attempt: every recipient left of
# the message was suppressed, so it was not sent (no server; the row ends the message). Not
# a loadtest.outcomes.Outcome: the analysis takes these rows out of the attempts
# (loadtest.analysis.bounces.split_suppressed) and counts them as suppressed.
SUPPRESSED = "suppressed"
