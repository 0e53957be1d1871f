"""Host and domain names as the DNS and SMTP know them, checked before they reach the wire.

A name lands in a recipient's address, an EHLO, a banner or a Postfix main.cf. Anything
else a string may hold (a '>', a ',', a space, a line break) changes what that line means,
so a name is accepted only as an LDH host name (RFC 1123: labels of letters, digits and
hyphens, none at either end of a label, 1 to 63 characters each, 253 in all), or as an
internationalised name that converts to one (Python's `idna` codec, then checked as the
A-labels it gives). The ASCII form is what is kept and sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

MAX_NAME = 253
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ALL_DIGITS = re.compile(r"[0-9]+")


def ascii_domain(text: str) -> str:
    """The name in lower-case ASCII (A-labels); ValueError says why `text` is not one."""
    if not isinstance(text, str) or not text:
        raise ValueError("an empty name is not a domain name")
    if text != text.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{text!r} holds spaces or control characters, not a domain name")
    if text.endswith("."):
        raise ValueError(f"{text!r}: no trailing dot in an address or a host name")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{text!r} is not an internationalised domain name: {exc}") from None
    name = text.lower()
    if len(name) > MAX_NAME:
        raise ValueError(f"{text!r} is longer than {MAX_NAME} characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{text!r} is not a domain name: each label is 1-63 letters, digits or "
                "hyphens, not starting or ending with a hyphen"
            )
        if label.startswith("xn--"):
            _punycode(text, label)
    if _ALL_DIGITS.fullmatch(labels[-1]):
        raise ValueError(f"{text!r} is an address or ends in digits, not a domain name")
    return name


def ascii_domain_keys(mapping: Mapping[str, V]) -> dict[str, V]:
    """Domain keys in their ASCII form; two spellings of one domain are one too many."""
    out: dict[str, V] = {}
    for key, value in mapping.items():
        name = ascii_domain(key)
        if name in out:
            raise ValueError(f"{key!r} is {name!r} again")
        out[name] = value
    return out


def _punycode(text: str, label: str) -> None:
    """An A-label must decode (and encode back) as IDNA, or it names nothing."""
    try:
        label.encode("ascii").decode("idna")
    except UnicodeError:
        raise ValueError(f"{text!r}: {label!r} is not a valid IDNA A-label") from None


def host_name_or_literal(text: str) -> str:
    """A host name, or an address literal as EHLO takes it ([192.0.2.1], [IPv6:2001:db8::1])."""
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        tagged = inner[:5].lower() == "ipv6:"
        try:
            parsed = ipaddress.ip_address(inner[5:] if tagged else inner)
        except ValueError:
            raise ValueError(f"{text!r} is not an address literal") from None
        if (parsed.version == 6) != tagged:
            raise ValueError(f"{text!r}: an IPv6 literal is written [IPv6:...], IPv4 without")
        return text
    name = ascii_domain(text)
    return text if text.isascii() else name
