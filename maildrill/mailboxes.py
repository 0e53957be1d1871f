"""The one form of address that names a mailbox that does not exist.

A campaign with `unknown_recipients` sends a share of its mail to addresses of this form,
and a sink's `mailboxes` behaviour answers them as a provider answers an address it has no
mailbox for; the analysis recognises them from the plan. Both halves need the same form,
so it lives here.

The form is a local part `nosuchuser.N` (N a number) in the recipient's usual domain:
plain lower-case letters, digits and a dot, so it is a dot-atom every MTA passes on
unchanged (no `+` or `-`, which a real MTA's `recipient_delimiter` may treat as an address
extension; no upper case, which some fold). A campaign's ordinary recipients are `userN`,
never of this form, so nothing but these addresses is ever refused by a sink's default
`mailboxes` behaviour, whatever relays them (an MTA under test included).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

UNKNOWN_PREFIX = "nosuchuser."
UNKNOWN_PATTERN = UNKNOWN_PREFIX + "*"  # a glob over the local part (the sink's default)


def unknown_address(number: int, domain: str) -> str:
    """The address of unknown mailbox `number` in `domain`."""
    return f"{UNKNOWN_PREFIX}{number}@{domain}"


def local_matches(address: str, pattern: str = UNKNOWN_PATTERN) -> bool:
    """Whether the local part of `address` matches the glob `pattern`, in lower case (as a
    provider looks a mailbox up: `NoSuchUser.1` is the same mailbox as `nosuchuser.1`)."""
    local = address.rpartition("@")[0]
    return fnmatchcase(local.lower(), pattern.lower())
