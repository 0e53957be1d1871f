"""Which addresses maildrill may send from and to, checked where they are used.

A recipient or sender is a plain address (dot-atom local part, `@`, a domain name) in a
reserved domain (RFC 2606 and RFC 6761: .test, .example, .invalid, .localhost,
example.com/.net/.org) or in one the scenario allows. The sender counts too: a bounce goes
to it. Validation applies these rules to the scenario, and the code that builds MAIL FROM,
RCPT TO and the headers naming them applies them again, so a scenario that was never
validated (or a bug on the way) still sends nothing anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from maildrill.hostnames import ascii_domain

RESERVED_TLDS = ("test", "example", "invalid", "localhost")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_ENDINGS = tuple("." + d for d in RESERVED_TLDS + RESERVED_DOMAINS)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_PATH = 256  # RFC 5321 4.5.3.1.3, with the angle brackets


class AddressError(ValueError):
    """An address or header value maildrill will not send; the message says why."""


def is_reserved_domain(domain: str) -> bool:
    """Whether `domain` is a domain name under a reserved name (its ASCII form is)."""
    try:
        name = ascii_domain(domain)
    except ValueError:
        return False
    return name in RESERVED_TLDS or name in RESERVED_DOMAINS or name.endswith(_RESERVED_ENDINGS)


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain in ASCII) of a plain address; AddressError for any other form:
    no display name, brackets, comments, quoted local part, route or second address."""
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise AddressError(f"{address!r} is not a plain address (name@domain)")
    if len(local) > MAX_LOCAL_PART:
        raise AddressError(f"{address!r}: the part before @ is over {MAX_LOCAL_PART} characters")
    try:
        name = ascii_domain(domain)
    except ValueError as exc:
        raise AddressError(f"{address!r}: {exc}") from None
    if len(local) + 1 + len(name) + 2 > MAX_PATH:
        raise AddressError(f"{address!r} is longer than an SMTP path may be ({MAX_PATH})")
    return local, name


def header_text(value: str, what: str) -> str:
    """A header value that stays one header, and shows as the text it is on a terminal: no
    line break (U+2028 and NEL included), control character or direction override."""
    if not value.isprintable():
        raise AddressError(f"{what}: {value!r} holds a line break or control character")
    return value


class AddressPolicy:
    """Reserved domains, and the real ones a scenario lists in allowed_recipient_domains."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        try:
            self.allowed = frozenset(ascii_domain(d) for d in allowed)
        except ValueError as exc:
            raise AddressError(f"allowed domains: {exc}") from None
        self._verdicts: dict[str, bool] = {}  # domain as sent: reserved or allowed

    def domain_allowed(self, domain: str) -> bool:
        """Whether mail may go to `domain` (its ASCII form: what is checked is what is sent)."""
        verdict = self._verdicts.get(domain)
        if verdict is None:
            try:
                name = ascii_domain(domain)
            except ValueError:
                verdict = False
            else:
                verdict = domain.isascii() and (name in self.allowed or is_reserved_domain(name))
            if len(self._verdicts) < 4096:  # a campaign has a few domains; never grows unbounded
                self._verdicts[domain] = verdict
        return verdict

    def check(self, address: str, role: str) -> str:
        """`address` unchanged if maildrill may send it as `role` (sender, recipient)."""
        local, at, domain = address.rpartition("@")
        if (
            at
            and _LOCAL_PART.fullmatch(local)
            and self.domain_allowed(domain)
            and len(local) <= MAX_LOCAL_PART
            and len(address) + 2 <= MAX_PATH
        ):
            return address
        try:
            split_address(address)  # the precise reason when the form is wrong
        except AddressError as exc:
            raise AddressError(f"{role}: {exc}") from None
        raise AddressError(
            f"{role} {address!r}: {domain!r} is neither reserved nor allowed "
            "(campaign.allowed_recipient_domains)"
        )

    def check_envelope(self, sender: str, recipients: Iterable[str]) -> None:
        """Before MAIL FROM: the sender and every recipient, or nothing is sent."""
        self.check(sender, "sender")
        count = 0
        for rcpt in recipients:
            self.check(rcpt, "recipient")
            count += 1
        if count == 0:
            raise AddressError("a message needs at least one recipient")
