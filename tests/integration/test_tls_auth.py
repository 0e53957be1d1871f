"""STARTTLS with generated and given certificates; AUTH PLAIN and LOGIN against the table."""

from __future__ import annotations

import smtplib
import ssl

import pytest
import trustme

from tests.helpers import RawClient, message, read_csv, wait_until

CREDENTIALS = {"alice": "s3cret", "bob": "hunter2"}


def trusting(cafile) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def self_signed_cert(sinks, name: str = "mx"):
    return sinks.journal_dir / "tls" / f"{name}.maildrill.test.crt"


def auth_with(client: smtplib.SMTP, mechanism: str, user: str, password: str) -> tuple[int, bytes]:
    """AUTH with one chosen mechanism; (code, text) whether it succeeds or not."""
    client.user, client.password = user, password
    method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
    try:
        return client.auth(mechanism, method)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error


# -- STARTTLS ---------------------------------------------------------------------------


def test_starttls_with_a_generated_self_signed_certificate(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": True}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=trusting(self_signed_cert(sinks)))[0] == 220
        client.ehlo()
        assert not client.has_extn("starttls"), "not offered twice"
        cert = client.sock.getpeercert()
        assert ("DNS", "mx.maildrill.test") in cert["subjectAltName"]
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        client.sendmail("a@example.com", ["b@example.com"], message("secret"))
    (row,) = read_csv(sinks.journal_dir / "receipts-mx.csv")
    assert (row["msg_id"], row["outcome"]) == ("secret", "accepted")


def test_second_starttls_inside_tls_is_refused_and_the_session_goes_on(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": True}]})
    with sinks.smtp("mx") as client:
        client.starttls(context=trusting(self_signed_cert(sinks)))
        client.ehlo()
        code, text = client.docmd("STARTTLS")
        assert (code, text[:6]) == (554, b"5.5.1 ")
        client.sendmail("a@example.com", ["b@example.com"], message("still-tls"))
    assert sinks.sink("mx").counters.accepted == 1


def test_self_signed_certificate_is_not_trusted_by_default_and_sink_carries_on(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": True}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())
    with sinks.smtp("mx") as client:
        client.starttls(context=trusting(self_signed_cert(sinks)))
        client.sendmail("a@example.com", ["b@example.com"], message("after"))
    counters = sinks.sink("mx").counters
    assert counters.accepted == 1
    assert wait_until(lambda: counters.active_sessions == 0)


def test_garbage_instead_of_a_tls_handshake_closes_only_that_session(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": True}]})
    with RawClient(sinks.port("mx")) as raw:
        assert raw.reply()[0] == 220
        assert raw.command(b"EHLO raw.test")[0] == 250
        assert raw.command(b"STARTTLS")[0] == 220
        raw.send(b"this is not a TLS ClientHello\r\n" * 4)
        assert raw.closed_by_server()
    with sinks.smtp("mx") as client:
        client.starttls(context=trusting(self_signed_cert(sinks)))
        client.sendmail("a@example.com", ["b@example.com"], message("ok"))
    counters = sinks.sink("mx").counters
    assert (counters.sessions, counters.accepted) == (2, 1)
    assert wait_until(lambda: counters.active_sessions == 0)


def test_starttls_with_a_given_certificate(start_sinks, tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert("mx.example.test", "127.0.0.1")
    cert, key = tmp_path / "mx.crt", tmp_path / "mx.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    starttls = {"cert": str(cert), "key": str(key)}
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": starttls}]})
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with sinks.smtp("mx") as client:
        client.starttls(context=context)
        subject = dict(x[0] for x in client.sock.getpeercert()["subject"])
        assert subject.get("organizationalUnitName", "").startswith("Testing")
        client.sendmail("a@example.com", ["b@example.com"], message("given"))
    assert not (sinks.journal_dir / "tls").exists(), "no self-signed pair when one is given"


# -- AUTH -------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_against_the_credentials_table(start_sinks, mechanism):
    sinks = start_sinks({"sinks": [{"name": "mx", "auth": {"credentials": CREDENTIALS}}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        for user, password in [("alice", "wrong"), ("mallory", "s3cret"), ("bob", "s3cret")]:
            code, text = auth_with(client, mechanism, user, password)
            assert (code, text[:6]) == (535, b"5.7.8 "), (user, password)
        assert auth_with(client, mechanism, "alice", "s3cret")[0] == 235
        assert client.docmd("AUTH", "PLAIN")[0] == 503, "already authenticated"
        client.sendmail("a@example.com", ["b@example.com"], message("authed"))
    refusals = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert [(r["code"], r["enhanced"]) for r in refusals][:3] == [("535", "5.7.8")] * 3
    assert sinks.sink("mx").counters.accepted == 1


def test_auth_offers_only_the_configured_mechanisms(start_sinks):
    auth = {"mechanisms": ["PLAIN"], "credentials": CREDENTIALS}
    sinks = start_sinks({"sinks": [{"name": "mx", "auth": auth}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["PLAIN"]
        code, text = auth_with(client, "LOGIN", "alice", "s3cret")
        assert (code, text[:6]) == (504, b"5.5.4 ")
        assert auth_with(client, "PLAIN", "alice", "s3cret")[0] == 235


def test_without_auth_config_auth_is_neither_offered_nor_accepted(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, _ = auth_with(client, "PLAIN", "alice", "s3cret")
        assert code >= 500


def test_auth_required_refuses_mail_until_authenticated(start_sinks):
    auth = {"credentials": CREDENTIALS, "required": True}
    sinks = start_sinks({"sinks": [{"name": "mx", "auth": auth}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        code, text = client.mail("a@example.com")
        assert (code, text[:6]) == (530, b"5.7.0 ")
        client.login("bob", "hunter2")
        client.sendmail("a@example.com", ["b@example.com"], message("after-auth"))
    assert [r["msg_id"] for r in read_csv(sinks.journal_dir / "receipts-mx.csv")] == ["after-auth"]


def test_auth_that_requires_tls_waits_for_starttls(start_sinks):
    auth = {"credentials": CREDENTIALS, "require_tls": True}
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": True, "auth": auth}]})
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlAHMzY3JldA==")
        assert (code, text[:7]) == (538, b"5.7.11 ")
        client.starttls(context=trusting(self_signed_cert(sinks)))
        client.ehlo()
        assert client.has_extn("auth")
        assert auth_with(client, "PLAIN", "alice", "wrong")[0] == 535
        assert auth_with(client, "PLAIN", "alice", "s3cret")[0] == 235
