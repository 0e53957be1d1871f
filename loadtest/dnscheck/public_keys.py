"""DKIM public keys, as a key file holds them and as a `_domainkey` TXT record publishes
them, in one comparable form: DER SubjectPublicKeyInfo for RSA, the 32 raw bytes for
Ed25519 (RFC 8463: the record's p= is the raw key, not an SPKI)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


class DkimKeyError(ValueError):
    """A key or record that cannot be read; the message is one line, for people."""


def key_file_public(path: Path) -> bytes:
    """The public key of a PEM file: a private key (OpenDKIM's `SELECTOR.private`) or a
    public key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            return _comparable(private.public_key())
        return _comparable(serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"{path}: not a PEM RSA or Ed25519 key ({exc})") from None


def _comparable(key: object) -> bytes:
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise TypeError(f"a {type(key).__name__}, not an RSA or Ed25519 key")


def record_tags(record: str) -> dict[str, str]:
    """A tag=value list (RFC 6376 3.2): names lower case, whitespace inside values dropped."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def record_public(record: str) -> bytes:
    """The public key a DKIM key record publishes; DkimKeyError when there is none (p= empty:
    the key is revoked) or it does not read."""
    tags = record_tags(record)
    if tags.get("v", "DKIM1") != "DKIM1":
        raise DkimKeyError(f"v={tags['v']}, not DKIM1")
    if "p" not in tags:
        raise DkimKeyError("no p= tag")
    if not tags["p"]:
        raise DkimKeyError("p= is empty: the key is revoked")
    try:
        raw = base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError):
        raise DkimKeyError("p= is not base64") from None
    kind = tags.get("k", "rsa").lower()
    if kind == "ed25519":
        if len(raw) != 32:
            raise DkimKeyError(f"k=ed25519 with a {len(raw)}-byte key, not 32")
        return raw
    if kind != "rsa":
        raise DkimKeyError(f"k={kind}: neither rsa nor ed25519")
    try:
        return _comparable(serialization.load_der_public_key(raw))
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"p= is not an RSA public key ({exc})") from None
