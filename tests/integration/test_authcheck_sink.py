"""A real sink with `verify:` checks each message over real sockets and journals the
verdicts; `enforce:` answers the client with the provider's code.

The DNS side here is a UDP socket on 127.0.0.1 that never answers (a server that does
not respond): every lookup times out, which is the temperror case end to end. The pass
and fail verdicts against the run's real DNS server come once that server is merged
(i15/dns); the verdict logic itself is covered in tests/unit/test_authcheck.py."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest

from tests.helpers import message, read_csv


@pytest.fixture
def silent_dns() -> Iterator[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _verify(dns: str, enforce: str) -> dict[str, object]:
    return {"dns": dns, "enforce": enforce, "lookup_timeout_s": 0.2, "deadline_s": 5}


def send_from(port: int, source: str, msg_id: str) -> tuple[int, bytes]:
    """One message over a connection bound to `source` (a sending MTA's address)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
        client.ehlo("mx2.shop.test")
        client.mail("news@shop.test")
        client.rcpt("a@gmail.test")
        return client.data(message(msg_id))


def test_lookups_that_time_out_are_journaled_as_temperror(start_sinks, silent_dns):
    sinks = start_sinks({"sinks": [{"name": "gmail", "verify": _verify(silent_dns, "none")}]})
    code, _ = send_from(sinks.port("gmail"), "127.0.0.12", "m1")
    assert code == 250
    (row,) = read_csv(sinks.journal_dir / "receipts-gmail.csv")
    assert row["peer"] == "127.0.0.12"
    assert (row["spf"], row["dkim"], row["dmarc"], row["ptr"]) == (
        "temperror", "none", "temperror", "temperror",
    )  # fmt: skip
    assert "ptr: PTR lookup failed" in row["auth_detail"]


def test_gmail_defers_what_it_could_not_authenticate(start_sinks, silent_dns):
    sinks = start_sinks({"sinks": [{"name": "gmail", "verify": _verify(silent_dns, "gmail")}]})
    code, text = send_from(sinks.port("gmail"), "127.0.0.11", "m2")
    assert (code, text.split(b" ", 1)[0]) == (421, b"4.7.26")
    assert not (sinks.journal_dir / "receipts-gmail.csv").exists() or not read_csv(
        sinks.journal_dir / "receipts-gmail.csv"
    )
    (refusal,) = read_csv(sinks.journal_dir / "refusals-gmail.csv")
    assert (refusal["stage"], refusal["code"], refusal["enhanced"]) == ("dot", "421", "4.7.26")
    assert refusal["msg_id"] == "m2"


def test_a_sink_without_verify_leaves_the_columns_empty(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "plain"}]})
    code, _ = send_from(sinks.port("plain"), "127.0.0.1", "m3")
    assert code == 250
    (row,) = read_csv(sinks.journal_dir / "receipts-plain.csv")
    assert [row[c] for c in ("spf", "dkim", "dkim_domain", "dmarc", "ptr")] == [""] * 5
