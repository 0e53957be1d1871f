"""`maildrill check`: the comparison on hand-made facts, then real sinks on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
import yaml

from loadtest import preflight
from loadtest.cli import main
from loadtest.preflight import Certificate, Expectations, ServerFacts, Step, Tls, compare
from sinks.tls import write_self_signed
from tests.helpers import REPO, read_csv

DEFAULT = str(REPO / "scenarios" / "default.yaml")
NOW = 1_800_000_000.0
DAY = 86400.0
MB = 1024 * 1024


def cert(days: float = 90, self_signed: bool = True) -> Certificate:
    return Certificate("CN=mx", "CN=mx" if self_signed else "CN=CA", ["DNS:mx"],
                       NOW - DAY, NOW + days * DAY, self_signed, "00")  # fmt: skip


def server(
    name: str,
    *,
    size: int | None = 10 * MB,
    starttls: bool = True,
    auth: str = "PLAIN LOGIN",
    extras: tuple[str, ...] = ("8BITMIME", "SMTPUTF8", "PIPELINING"),
    certificate: Certificate | None = None,
    answered: bool = True,
) -> ServerFacts:
    """The facts a probe would gather from a server offering these."""
    if not answered:
        return ServerFacts(name, "127.0.0.1", 1, outcome="refused", phase="connect")
    ehlo = {k: "" for k in extras}
    if size is not None:
        ehlo["SIZE"] = str(size)
    if starttls:
        ehlo["STARTTLS"] = ""
    if auth:
        ehlo["AUTH"] = auth
    tls = Tls("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, certificate or cert()) if starttls else None
    return ServerFacts(name, "127.0.0.1", 25, answered=True, banner="220 mx", greeting_ms=1.0,
                       ehlo=ehlo, ehlo_tls=dict(ehlo) if starttls else None, tls=tls)  # fmt: skip


def codes(facts: list[ServerFacts], **kwargs) -> list[tuple[str, str]]:
    return sorted((f.code, f.server) for f in compare(facts, now=NOW, **kwargs).flags)


# -- the comparison, pure ------------------------------------------------------------------


def test_identical_servers_flag_nothing():
    result = compare([server("primary"), server("secondary")], now=NOW)
    assert result.ok
    assert result.flags == []
    assert result.notes == []


def test_smaller_size_on_the_secondary_is_flagged_a_larger_one_is_not():
    assert codes([server("p", size=10 * MB), server("s", size=MB)]) == [("size-smaller", "s")]
    assert codes([server("p", size=MB), server("s", size=10 * MB)]) == []


def test_size_limit_against_no_limit_and_against_no_declaration():
    # SIZE without a number (RFC 1870: no fixed maximum) on the primary
    assert codes([server("p", size=0), server("s", size=MB)]) == [("size-smaller", "s")]
    # no SIZE at all: the limit is unknown, a note and no flag
    result = compare([server("p", size=None), server("s", size=MB)], now=NOW)
    assert result.flags == []
    assert "declares no SIZE" in result.notes[0]


def test_starttls_on_one_only_is_flagged_either_way():
    assert codes([server("p"), server("s", starttls=False)]) == [("starttls-mismatch", "s")]
    assert codes([server("p", starttls=False), server("s")]) == [("starttls-mismatch", "s")]


def test_an_auth_mechanism_the_secondary_lacks_is_flagged_an_extra_one_is_not():
    result = compare([server("p", auth="PLAIN LOGIN"), server("s", auth="PLAIN")], now=NOW)
    assert [(f.code, f.server) for f in result.flags] == [("auth-missing", "s")]
    assert "LOGIN" in result.flags[0].message
    assert codes([server("p", auth="PLAIN"), server("s", auth="PLAIN LOGIN CRAM-MD5")]) == []


def test_auth_offered_only_after_starttls_counts():
    p = server("p", auth="PLAIN")
    s = server("s", auth="")
    assert s.ehlo_tls is not None
    s.ehlo_tls["AUTH"] = "PLAIN"  # like a sink with auth.require_tls
    assert codes([p, s]) == []


def test_8bitmime_and_smtputf8_missing_on_the_secondary_are_flagged_extras_are_notes():
    missing = codes([server("p"), server("s", extras=("PIPELINING",))])
    assert missing == [("8bitmime-missing", "s"), ("smtputf8-missing", "s")]
    result = compare([server("p", extras=()), server("s", extras=("SMTPUTF8",))], now=NOW)
    assert result.flags == []
    assert "SMTPUTF8 on s only" in result.notes


def test_pipelining_or_chunking_on_one_only_is_a_note():
    result = compare(
        [
            server("p", extras=("8BITMIME", "SMTPUTF8", "CHUNKING")),
            server("s", extras=("8BITMIME", "SMTPUTF8", "PIPELINING")),
        ],
        now=NOW,
    )
    assert result.flags == []
    assert len(result.notes) == 2


def test_certificate_expiring_within_14_days_is_flagged_on_any_server():
    assert codes([server("p", certificate=cert(days=13.9)), server("s")]) == [
        ("cert-expiring", "p")
    ]
    assert codes([server("p"), server("s", certificate=cert(days=3))]) == [("cert-expiring", "s")]
    assert codes([server("p"), server("s", certificate=cert(days=14.1))]) == []
    assert codes([server("p"), server("s", certificate=cert(days=-1))]) == [("cert-expired", "s")]
    assert codes([server("p"), server("s", certificate=cert(days=20))], expiry_days=30) == [
        ("cert-expiring", "s")
    ]


def test_a_generated_short_lived_certificate_is_parsed_and_flagged(tmp_path):
    short, _ = write_self_signed("mx2.example.test", tmp_path / "short", days=7)
    long_, _ = write_self_signed("mx1.example.test", tmp_path / "long", days=90)
    from cryptography import x509  # the DER a TLS peer would send
    from cryptography.hazmat.primitives.serialization import Encoding

    def parsed(path: Path) -> Certificate:
        der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)
        return preflight.parse_certificate(der)

    c = parsed(short)
    assert c.self_signed
    assert c.subject == "CN=mx2.example.test"
    assert c.sans == ["DNS:mx2.example.test", "IP:127.0.0.1"]
    assert 6.9 < c.days_left(time.time()) <= 7.0
    facts = [server("p", certificate=parsed(long_)), server("s", certificate=c)]
    assert sorted((f.code, f.server) for f in compare(facts, now=time.time()).flags) == [
        ("cert-expiring", "s")
    ]


def test_self_signed_secondary_behind_a_ca_signed_primary_is_flagged():
    ca = trustme.CA()
    leaf = ca.issue_cert("mx1.example.test")
    der = leaf.cert_chain_pems[0].bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    signed = preflight.parse_certificate(
        x509.load_pem_x509_certificate(der).public_bytes(Encoding.DER)
    )
    assert not signed.self_signed
    assert codes([server("p", certificate=signed), server("s")]) == [("cert-self-signed", "s")]
    assert codes([server("p"), server("s", certificate=signed)]) == []


def test_a_server_that_does_not_answer_is_flagged_and_an_absent_reference_compares_nothing():
    assert codes([server("p"), server("s", answered=False)]) == [("unreachable", "s")]
    result = compare([server("p", answered=False), server("s", size=1)], now=NOW)
    assert [(f.code, f.server) for f in result.flags] == [("unreachable", "p")]
    assert "nothing compared" in result.notes[0]


def test_what_the_sender_is_set_up_to_do_is_checked_per_server():
    expect = Expectations(starttls=frozenset({"s"}), auth=frozenset({"s"}), max_message_size=2 * MB)
    facts = [server("p"), server("s", starttls=False, auth="", size=MB)]
    assert codes(facts, expect=expect) == [
        ("auth-missing", "s"), ("auth-needed", "s"), ("size-below-campaign", "s"),
        ("size-smaller", "s"), ("starttls-mismatch", "s"), ("starttls-needed", "s"),
    ]  # fmt: skip


def test_failed_login_and_failed_test_message_are_flagged():
    s = server("s")
    s.login = Step(False, "auth", 535, "535 5.7.8 Authentication credentials invalid")
    s.transaction = Step(False, "rcpt", 550, "550 5.1.1 no such user", "id-1")
    assert codes([server("p"), s]) == [("login-failed", "s"), ("transaction-failed", "s")]


def test_facts_survive_json():
    s = server("s")
    s.login = Step(True, "auth", 235, "ok")
    facts = [server("p"), s, server("x", answered=False)]
    data = json.loads(json.dumps(preflight.as_json(facts, compare(facts, now=NOW))))
    assert [ServerFacts.from_dict(d) for d in data["servers"]] == facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2525", ("127.0.0.1:2525", "127.0.0.1", 2525)),
        ("primary=localhost:25", ("primary", "localhost", 25)),
        ("[::1]:2526", ("[::1]:2526", "::1", 2526)),
    ],
)
def test_targets_parse(text, expected):
    t = preflight.parse_target(text)
    assert (t.name, t.host, t.port) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:x",
        ":25",
        "=1.2:3",
        "10.0.0.1:25",
        "mx.example.com:25",
        "127.0.0.1:70000",
    ],
)
def test_bad_or_remote_targets_are_refused(text):
    with pytest.raises(preflight.TargetError):
        preflight.parse_target(text)


# -- real sinks on loopback --------------------------------------------------------------

PRIMARY = {"name": "primary", "hostname": "mx1.example.test", "size_limit": 10 * MB,
           "starttls": True, "auth": {"mechanisms": ["PLAIN", "LOGIN"],
                                      "credentials": {"campaign": "s3cret"}}}  # fmt: skip


def addresses(sinks, *names: str) -> list[str]:
    return [f"{name}=127.0.0.1:{sinks.port(name)}" for name in names]


def check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def flags_of(capsys, *args: str) -> tuple[int, list[tuple[str, str]]]:
    code, out, _ = check(capsys, "--json", *args)
    return code, sorted((f["code"], f["server"]) for f in json.loads(out)["flags"])


def test_two_sinks_configured_differently_give_exactly_the_expected_flags(start_sinks, capsys):
    secondary = {
        "name": "secondary",
        "size_limit": MB,
        "smtputf8": False,
        "auth": {"mechanisms": ["PLAIN"], "credentials": {"campaign": "s3cret"}},
    }
    sinks = start_sinks({"sinks": [PRIMARY, secondary]})
    code, flags = flags_of(capsys, *addresses(sinks, "primary", "secondary"))
    assert code == 1
    assert flags == [
        ("auth-missing", "secondary"),
        ("size-smaller", "secondary"),
        ("smtputf8-missing", "secondary"),
        ("starttls-mismatch", "secondary"),
    ]
    code, out, _ = check(capsys, *addresses(sinks, "primary", "secondary"))
    assert code == 1
    assert "4 problems that would break mail after a failover" in out
    size_row = next(line for line in out.splitlines() if line.startswith("SIZE"))
    assert "10.0 MiB" in size_row
    assert "1.0 MiB) *" in size_row
    tls_row = next(line for line in out.splitlines() if line.startswith("TLS"))
    assert "TLSv1." in tls_row


def test_identical_sinks_flag_nothing_and_exit_0(start_sinks, capsys):
    twin = dict(PRIMARY, name="secondary", hostname="mx2.example.test")
    sinks = start_sinks({"sinks": [PRIMARY, twin]})
    code, out, _ = check(capsys, *addresses(sinks, "primary", "secondary"))
    assert code == 0, out
    assert "no differences that would break mail after a failover" in out
    assert "CN=mx1.example.test" in out
    assert "CN=mx2.example.test" in out


def test_a_certificate_expiring_soon_is_flagged_from_a_real_handshake(
    start_sinks, capsys, tmp_path
):
    cert_path, key = write_self_signed("mx2.example.test", tmp_path / "tls", days=5)
    secondary = dict(PRIMARY, name="secondary", starttls={"cert": str(cert_path), "key": str(key)})
    sinks = start_sinks({"sinks": [PRIMARY, secondary]})
    code, flags = flags_of(capsys, *addresses(sinks, "primary", "secondary"))
    assert (code, flags) == (1, [("cert-expiring", "secondary")])


def test_servers_that_refuse_hang_or_turn_sessions_away_are_unreachable(start_sinks, capsys):
    sinks = start_sinks(
        {
            "sinks": [
                PRIMARY,
                {"name": "hang", "behaviours": [{"kind": "hang"}]},
                {"name": "busy", "behaviours": [{"kind": "busy"}]},
            ]
        }
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    started = time.monotonic()
    code, out, _ = check(
        capsys,
        "--json",
        "--timeout",
        "0.3",
        *addresses(sinks, "primary", "hang", "busy"),
        f"gone=127.0.0.1:{closed}",
    )
    assert time.monotonic() - started < 3, "servers are checked at once, not one by one"
    assert code == 1
    result = json.loads(out)
    assert sorted((f["code"], f["server"]) for f in result["flags"]) == [
        ("unreachable", "busy"),
        ("unreachable", "gone"),
        ("unreachable", "hang"),
    ]
    by_name = {s["name"]: s for s in result["servers"]}
    assert (by_name["gone"]["outcome"], by_name["gone"]["phase"]) == ("refused", "connect")
    assert (by_name["hang"]["outcome"], by_name["hang"]["phase"]) == ("timeout", "greeting")
    assert (by_name["busy"]["code"], by_name["busy"]["phase"]) == (421, "greeting")


def test_the_test_transaction_reaches_the_sink_with_maildrill_headers(start_sinks, capsys):
    sinks = start_sinks({"sinks": [PRIMARY, dict(PRIMARY, name="secondary")]})
    code, out, _ = check(
        capsys, "--json", "--transaction", *addresses(sinks, "primary", "secondary")
    )
    assert code == 0, out
    steps = {s["name"]: s["transaction"] for s in json.loads(out)["servers"]}
    assert all(step["ok"] and step["code"] == 250 for step in steps.values())
    for name in ("primary", "secondary"):
        (row,) = read_csv(sinks.journal_dir / f"receipts-{name}.csv")
        assert row["msg_id"] == steps[name]["msg_id"]
        assert row["msg_id"].startswith("preflight-")
        assert row["msg_id"].endswith(name)


def test_a_scenario_checks_the_senders_setup_too(start_sinks, capsys, tmp_path, monkeypatch):
    sinks = start_sinks({"sinks": [PRIMARY, dict(PRIMARY, name="secondary", size_limit=MB)]})
    monkeypatch.setenv("MAILDRILL_TEST_PASSWORD", "wrong")
    scenario = {
        "name": "check",
        "servers": [
            {"name": "primary", "port": sinks.port("primary"), "priority": 10, "starttls": True,
             "username": "campaign", "password_env": "MAILDRILL_TEST_PASSWORD"},
            {"name": "secondary", "port": sinks.port("secondary"), "priority": 20},
        ],
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}],
                     "streams": [{"size_max": 2 * MB}]},
    }  # fmt: skip
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    code, flags = flags_of(capsys, "--scenario", str(path))
    assert code == 1
    assert flags == [("login-failed", "primary"), ("size-below-campaign", "secondary"),
                     ("size-smaller", "secondary")]  # fmt: skip
    monkeypatch.setenv("MAILDRILL_TEST_PASSWORD", "s3cret")
    code, out, _ = check(capsys, "--json", "--scenario", str(path))
    assert json.loads(out)["servers"][0]["login"]["ok"] is True


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["127.0.0.1:1"],  # one target is fine: see the next test
        ["10.1.2.3:25", "127.0.0.1:26"],
        ["a=127.0.0.1:25", "a=127.0.0.1:26"],
        ["--scenario", "default"],
        ["--scenario", DEFAULT],
        ["--scenario", DEFAULT, "127.0.0.1:25"],
        ["127.0.0.1:25", "--server", "primary=127.0.0.1:25"],
        ["127.0.0.1:25", "--rcpt", "someone@gmail.com"],
        ["127.0.0.1:25", "--timeout", "0"],
    ],
)
def test_bad_input_exits_2_with_one_line(args, capsys):
    code, out, err = check(capsys, *args)
    if args == ["127.0.0.1:1"]:
        assert code == 1  # refused: flagged, not bad input
        return
    assert code == 2, out
    assert err.count("\n") == 1
    assert err.startswith("maildrill: ")


def test_a_scenario_with_local_sinks_needs_their_addresses(start_sinks, capsys):
    code, _, err = check(capsys, "--scenario", DEFAULT)
    assert code == 2
    assert "maildrill run" in err
    assert "--server primary=HOST:PORT" in err
    twin = dict(PRIMARY, name="secondary")
    sinks = start_sinks({"sinks": [PRIMARY, twin]})
    code, out, _ = check(capsys, "--scenario", DEFAULT,
                         "--server", f"primary=127.0.0.1:{sinks.port('primary')}",
                         "--server", f"secondary=127.0.0.1:{sinks.port('secondary')}")  # fmt: skip
    assert code == 0, out


@pytest.mark.slow
def test_exit_codes_from_a_real_process(start_sinks):
    sinks = start_sinks({"sinks": [PRIMARY, {"name": "secondary", "size_limit": MB}]})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "loadtest.cli", "check", *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    port = sinks.port("primary")
    assert run(f"a=127.0.0.1:{port}", f"b=127.0.0.1:{port}").returncode == 0
    assert run(*addresses(sinks, "primary", "secondary")).returncode == 1
    assert run("192.0.2.1:25").returncode == 2


# -- inside `maildrill run` --------------------------------------------------------------


@pytest.mark.slow
def test_strict_preflight_stops_the_run_before_any_load(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         "--set", "servers.1.sink.size_limit=1048576", "--set", "strict_preflight=true"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("maildrill: pre-flight check failed (strict_preflight): secondary:")
    assert "SIZE 1048576" in last
    report = json.loads((run_dir / "preflight.json").read_text())
    assert [(f["code"], f["server"]) for f in report["flags"]] == [("size-smaller", "secondary")]
    assert not (run_dir / "attempts.csv").exists()
    assert not (run_dir / "probes.csv").exists()
