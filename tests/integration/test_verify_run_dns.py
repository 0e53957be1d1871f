"""`maildrill sinks` with a `dns:` section and a sink that verifies with no dns of its own:
the sink asks the run's DNS server, so mail from an MTA the zone vouches for passes every
check and mail from one it does not gets Gmail's refusal, journaled as such.

The zone publishes SPF for 127.0.0.11, a DKIM key made here, DMARC p=reject, and PTR and
A for mx1.shop.test; the client sends from 127.0.0.11 (signed) and 127.0.0.12 (unsigned).
"""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import dkim
import yaml

from loadtest.dkim_keys import new_key_pair, txt_value
from tests.helpers import maildrill_sinks, read_csv

ALIGNED, STRANGER = "127.0.0.11", "127.0.0.12"
SIGNED, UNSIGNED = 3, 2  # messages sent from each


def key_pair() -> tuple[bytes, str]:
    """A fresh RSA key, made as a run makes its keys: the private key in PEM, the public
    one as a DKIM TXT record."""
    private, public = new_key_pair()
    return private, txt_value(public)


def scenario(dkim_record: str) -> dict[str, Any]:
    return {
        "name": "verify-run-dns",
        "servers": [{"name": "gmail", "local": True, "sink": {"verify": {"enforce": "gmail"}}}],
        "campaign": {"schedule": [{"duration_s": 60, "rate": 1}]},
        "dns": {
            "zones": {
                "shop.test": {
                    "MX": "10 mx1.shop.test",
                    "TXT": "v=spf1 ip4:127.0.0.11 -all",
                    "mx1": {"A": ALIGNED},
                    "s1._domainkey": {"TXT": dkim_record},
                    "_dmarc": {"TXT": "v=DMARC1; p=reject"},
                },
                "127.in-addr.arpa": {ALIGNED: {"PTR": "mx1.shop.test"}},
            }
        },
    }


def message(msg_id: str, private: bytes | None) -> bytes:
    body = (
        f"From: <news@shop.test>\r\nTo: <a@gmail.test>\r\nSubject: drill {msg_id}\r\n"
        f"Message-ID: <{msg_id}@shop.test>\r\nX-Maildrill-Id: {msg_id}\r\n\r\nhello\r\n"
    ).encode()
    if private is None:
        return body
    return dkim.sign(body, b"s1", b"shop.test", private, include_headers=[b"from"]) + body


def send(port: int, source: str, helo: str, msg: bytes) -> tuple[int, bytes]:
    """One message over a connection bound to `source` (the sending MTA's address)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(source, 0)) as client:
        client.ehlo(helo)
        client.mail("news@shop.test")
        client.rcpt("a@gmail.test")
        return client.data(msg)


def test_a_sink_without_dns_verifies_against_the_runs_server(tmp_path: Path) -> None:
    private, public = key_pair()
    path = tmp_path / "verify.yaml"
    path.write_text(yaml.safe_dump(scenario(public), sort_keys=False))
    out = tmp_path / "out"
    replies: dict[str, tuple[int, bytes]] = {}
    with maildrill_sinks(path, out) as run:
        dns = f"{run.ready['dns']['host']}:{run.ready['dns']['port']}"
        (sink,) = run.ready["sinks"]
        for i in range(SIGNED):
            msg_id = f"signed-{i}"
            replies[msg_id] = send(sink["port"], ALIGNED, "mx1.shop.test", message(msg_id, private))
        for i in range(UNSIGNED):
            msg_id = f"unsigned-{i}"
            replies[msg_id] = send(sink["port"], STRANGER, "mx2.shop.test", message(msg_id, None))
        err = run.stop()
    assert run.proc.returncode == 0, err

    # What the client saw, message by message.
    accepted = sorted(m for m, (code, _) in replies.items() if code == 250)
    refused = sorted(m for m, (code, text) in replies.items()
                     if (code, text.split(b" ", 1)[0]) == (550, b"5.7.26"))  # fmt: skip
    assert accepted == [f"signed-{i}" for i in range(SIGNED)]
    assert refused == [f"unsigned-{i}" for i in range(UNSIGNED)]
    assert all(b"DMARC policy" in replies[m][1] for m in refused)

    # The sink was given the run's DNS server, the one in the ready line.
    config = yaml.safe_load((out / "scenario.yaml").read_text())
    assert config["servers"][0]["sink"]["verify"] == {"enforce": "gmail"}  # as written
    assert f"DNS served on {dns}" in err

    # The receipts: one per 250, every check passed, the signature's domain named.
    receipts = read_csv(out / "receipts-gmail.csv")
    assert sorted(r["msg_id"] for r in receipts) == accepted
    for row in receipts:
        assert row["peer"] == ALIGNED
        verdicts = [row[c] for c in ("spf", "dkim", "dkim_domain", "dmarc", "dmarc_policy", "ptr")]
        assert verdicts == ["pass", "pass", "shop.test", "pass", "reject", "pass"], row
        assert row["auth_detail"] == ""

    # The refusals: one per 550, at the end of DATA, with Gmail's code.
    refusals = read_csv(out / "refusals-gmail.csv")
    assert sorted(r["msg_id"] for r in refusals) == refused
    for row in refusals:
        assert (row["stage"], row["code"], row["enhanced"]) == ("dot", "550", "5.7.26"), row
