"""TLS contexts for STARTTLS: a given certificate, or a self-signed one made on the spot."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from maildrill.paths import inside, private_dir, write_private


def write_self_signed(
    hostname: str, directory: Path, days: int = 30, key_directory: Path | None = None
) -> tuple[Path, Path]:
    """Write a self-signed certificate for `hostname` (and 127.0.0.1) and its key.

    The key goes to `key_directory` when given: a sink passes a private one (see
    `maildrill.paths.private_dir`), so no private key is left in a run directory that travels;
    the certificate, public, stays in `directory` for clients to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = inside(directory, f"{hostname}.crt")
    key_path = inside(key_directory or directory, f"{hostname}.key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(key_path, private.decode("ascii"))
    return cert_path, key_path


def self_signed_context(hostname: str, cert_directory: Path) -> ssl.SSLContext:
    """A server context with a new self-signed pair: the certificate written to
    `cert_directory`, the key only to a private directory removed once it is loaded."""
    with private_dir() as keys:
        return server_context(*write_self_signed(hostname, cert_directory, key_directory=keys))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx
