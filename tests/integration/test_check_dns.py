"""`maildrill check --dns`: a clean zone, then each kind of gap one at a time, checked
against the real DNS server (maildrill.dns on 127.0.0.1, port 0) serving the scenario's
zones, and once against a server started apart (`--resolver`).

The scenario has two Postfix instances, primary and secondary: they send from 127.0.0.11
and 127.0.0.12 with HELO NAME.maildrill.test (the defaults, nothing given), and DKIM-sign
with selectors s1 and s2 whose private keys are written to files here, the public halves
published in the zone."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loadtest.bundled import bundled_names
from loadtest.cli import main
from loadtest.dnscheck.command import check as check_dns
from loadtest.dnscheck.command import served_zones
from loadtest.dnscheck.facts import DkimKey, Sender
from loadtest.dnscheck.run_keys import run_keys
from loadtest.scenario import load_scenario
from loadtest.server_spec import DkimSpec
from maildrill.dns.files import write_zones
from maildrill.dns.zone import parse_zones
from tests.helpers import REPO


def _key(path: Path) -> str:
    """A new RSA key written to `path` (PEM, as OpenDKIM keeps it); its p= value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(spki).decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("dkim")
    return {
        "s1": _key(folder / "primary.private"),
        "s2": _key(folder / "secondary.private"),
        "other": _key(folder / "unused.private"),
        "folder": folder,
    }


def clean_scenario(keys: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "dns-check",
        "servers": [
            {"name": "primary", "priority": 10, "postfix": {"relay": "sink"}},
            {"name": "secondary", "priority": 20, "postfix": {"relay": "sink"}},
            {"name": "sink", "local": True},
        ],
        "routing": {"policy": "failover", "servers": ["primary", "secondary"]},
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
        "dns": {
            "zones": {
                "shop.test": {
                    "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
                    "TXT": "v=spf1 ip4:127.0.0.11 ip4:127.0.0.12 -all",
                    "mx1": {"A": "127.0.0.11"},
                    "mx2": {"A": "127.0.0.12"},
                    "_dmarc": {"TXT": "v=DMARC1; p=reject"},
                    "s1._domainkey": {"TXT": f"v=DKIM1; k=rsa; p={keys['s1']}"},
                    "s2._domainkey": {"TXT": f"v=DKIM1; k=rsa; p={keys['s2']}"},
                },
                "maildrill.test": {
                    "primary": {"A": "127.0.0.11"},
                    "secondary": {"A": "127.0.0.12"},
                },
                "127.in-addr.arpa": {
                    "127.0.0.11": {"PTR": "primary.maildrill.test"},
                    "127.0.0.12": {"PTR": "secondary.maildrill.test"},
                },
            }
        },
    }


def run_check(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    keys: dict[str, Any],
    scenario: dict[str, Any],
    *extra: str,
) -> tuple[int, str, str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    folder = keys["folder"]
    code = main(
        [
            "check", str(path), "--dns", "shop.test",
            "--dkim", "primary=s1", "--dkim-key", f"primary={folder / 'primary.private'}",
            "--dkim", "secondary=s2", "--dkim-key", f"secondary={folder / 'secondary.private'}",
            *extra,
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def problems(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  ! ")]


def test_a_clean_zone_passes_every_check(capsys, tmp_path, keys) -> None:
    code, out, err = run_check(capsys, tmp_path, keys, clean_scenario(keys))
    assert (code, err) == (0, ""), out
    assert problems(out) == []
    assert "shop.test: every server passes what providers check in DNS" in out
    table = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "127.0.0.11" in table["address"]
    assert "127.0.0.12" in table["address"]
    assert table["SPF"].split()[1:] == ["pass", "pass"]
    assert "s1: key matches" in table["DKIM"]
    assert "s2: key matches" in table["DKIM"]
    assert "(2 of 10 DNS lookups)" not in out  # ip4 terms cost no lookup
    assert "(0 of 10 DNS lookups)" in out
    assert "10 mx1.shop.test (127.0.0.11), 20 mx2.shop.test (127.0.0.12)" in out


def _without(scenario: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(scenario)
    node = out["dns"]["zones"]
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _with(scenario: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    out = copy.deepcopy(scenario)
    node = out["dns"]["zones"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _over_the_limit(scenario: dict[str, Any]) -> dict[str, Any]:
    """Eleven includes before the servers' own addresses: 11 lookups."""
    out = copy.deepcopy(scenario)
    zone = out["dns"]["zones"]["shop.test"]
    includes = " ".join(f"include:_spf{i}.shop.test" for i in range(1, 12))
    zone["TXT"] = f"v=spf1 {includes} ip4:127.0.0.11 ip4:127.0.0.12 -all"
    for i in range(1, 12):
        zone[f"_spf{i}"] = {"TXT": f"v=spf1 ip4:192.0.2.{i} -all"}
    return out


GAPS = {
    "mx-missing": (
        lambda s, k: _without(s, "shop.test", "MX"),
        "shop.test has no MX record",
    ),
    "spf-not-covered": (
        lambda s, k: _with(s, "v=spf1 ip4:127.0.0.11 -all", "shop.test", "TXT"),
        "secondary (127.0.0.12) is not covered by shop.test's SPF (fail)",
    ),
    "spf-lookups": (
        lambda s, k: _over_the_limit(s),
        "shop.test's SPF takes 11 DNS lookups, over the limit of 10",
    ),
    "dkim-missing": (
        lambda s, k: _without(s, "shop.test", "s2._domainkey"),
        "secondary (127.0.0.12) signs with selector s2 but s2._domainkey.shop.test is not "
        "published",
    ),
    "dkim-mismatch": (
        lambda s, k: _with(
            s, {"TXT": f"v=DKIM1; k=rsa; p={k['other']}"}, "shop.test", "s2._domainkey"
        ),
        "secondary (127.0.0.12): s2._domainkey.shop.test publishes a key other than the one "
        "it signs with",
    ),
    "dmarc-missing": (
        lambda s, k: _without(s, "shop.test", "_dmarc"),
        "shop.test publishes no DMARC record (_dmarc.shop.test)",
    ),
    "ptr-missing": (
        lambda s, k: _without(s, "127.in-addr.arpa", "127.0.0.12"),
        "secondary (127.0.0.12) has no PTR record",
    ),
    "ptr-not-confirmed": (
        lambda s, k: _with(s, {"A": "127.0.0.99"}, "maildrill.test", "secondary"),
        "secondary (127.0.0.12): its PTR secondary.maildrill.test does not resolve back to "
        "127.0.0.12",
    ),
}


@pytest.mark.parametrize("gap", GAPS)
def test_each_gap_alone_is_found_and_exits_1(capsys, tmp_path, keys, gap) -> None:
    make, says = GAPS[gap]
    code, out, err = run_check(capsys, tmp_path, keys, make(clean_scenario(keys), keys))
    assert (code, err) == (1, ""), out
    found = problems(out)
    assert len(found) == 1, found  # that gap and no other
    assert found[0].startswith(f"! {says}"), found
    assert found[0].endswith(f"[{gap}]"), found


def test_json_names_the_finding_and_counts_the_lookups(capsys, tmp_path, keys) -> None:
    code, out, _ = run_check(
        capsys, tmp_path, keys, _over_the_limit(clean_scenario(keys)), "--json"
    )
    data = json.loads(out)
    assert code == 1
    assert data["ok"] is False
    assert [f["code"] for f in data["findings"]] == ["spf-lookups"]
    assert data["facts"]["spf"]["lookups"] == 11
    assert len(data["facts"]["spf"]["terms"]) == 11
    # pyspf, evaluating as a provider does, stops at the 11th lookup: both servers fail
    assert [s["spf"] for s in data["facts"]["senders"]] == ["permerror", "permerror"]


def test_a_resolver_named_is_asked_instead(capsys, tmp_path, keys) -> None:
    """The zones served apart by `python -m maildrill.dns`, with the secondary's PTR
    removed; the scenario's own zones are clean, and are not what is asked."""
    scenario = clean_scenario(keys)
    gap = _without(scenario, "127.in-addr.arpa", "127.0.0.12")["dns"]["zones"]
    paths = write_zones(parse_zones(gap), tmp_path / "zones")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maildrill.dns", *map(str, paths)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())["dns"]
        resolver = f"{ready['host']}:{ready['port']}"
        code, out, err = run_check(capsys, tmp_path, keys, scenario, "--resolver", resolver)
        # a scenario naming it (`resolver:`, no zones of its own) is checked as it answers
        its_own = {**scenario, "resolver": resolver, "allow_remote": True}
        del its_own["dns"]
        own = run_check(capsys, tmp_path, keys, its_own)
        # no scenario: the servers named on the command line; the primary alone is clean
        alone = main(
            ["check", "--dns", "shop.test", "--resolver", resolver,
             "--source", "primary=127.0.0.11", "--helo", "primary=primary.maildrill.test"]
        )  # fmt: skip
        alone_out, alone_err = capsys.readouterr()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # and its stdout closed
    assert (code, err) == (1, ""), out
    assert f"shop.test, as {resolver} answers" in out
    assert [p.rsplit(" ", 1)[1] for p in problems(out)] == ["[ptr-missing]"]
    assert own == (code, out, err)
    assert (alone, alone_err) == (0, ""), alone_out
    assert "primary (reference)" in alone_out
    assert "secondary" not in alone_out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--resolver", "192.0.2.53:53"), "192.0.2.53 is outside loopback"),
        (("--resolver", "127.0.0.1"), "expected HOST:PORT"),
        (("--source", "tertiary=10.0.0.1"), "10.0.0.1 is outside loopback"),
        (("--helo", "nobody=x.test"), "nobody is not a sending server here"),
        (("--dkim-key", "primary=/nonexistent.pem"), "cannot read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, keys, extra, says) -> None:
    code, out, err = run_check(capsys, tmp_path, keys, clean_scenario(keys), *extra)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert says in err


def test_a_domain_outside_the_zones_or_no_zones_is_bad_input(capsys, tmp_path, keys) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(clean_scenario(keys)))
    assert main(["check", str(path), "--dns", "other.test"]) == 2
    assert "not in the scenario's zones" in capsys.readouterr().err
    no_zones = clean_scenario(keys)
    del no_zones["dns"]
    path.write_text(yaml.safe_dump(no_zones))
    assert main(["check", str(path), "--dns", "shop.test"]) == 2
    assert "give --resolver HOST:PORT" in capsys.readouterr().err


def test_a_secondary_that_does_neither_fails_dmarc_too(capsys, tmp_path, keys) -> None:
    """The failover mistake the issue starts from: the secondary outside SPF and its DKIM
    key never published: three findings, all its own, and its DMARC column FAIL."""
    scenario = _with(clean_scenario(keys), "v=spf1 ip4:127.0.0.11 -all", "shop.test", "TXT")
    scenario = _without(scenario, "shop.test", "s2._domainkey")
    code, out, _ = run_check(capsys, tmp_path, keys, scenario)
    assert code == 1
    assert [p.rsplit(" ", 1)[1] for p in problems(out)] == [
        "[spf-not-covered]",
        "[dkim-missing]",
        "[dmarc-fail]",
    ]
    assert all(p.startswith("! secondary (127.0.0.12)") for p in problems(out))
    *_, dmarc_row = (line for line in out.splitlines() if line.startswith("DMARC "))
    assert dmarc_row.split()[1:] == ["pass", "(SPF,", "DKIM)", "FAIL", "*"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--resolver", "127.0.0.1:53"], "--resolver goes with --dns DOMAIN"),
        (["--dns", "shop.test"], "give the scenario"),
        (["--dns", "shop.test", "--resolver", "127.0.0.1:53"], "give the scenario"),
        (["--dns", "shop..test", "--scenario", "postfix-pair"], "--dns 'shop..test'"),
        (["--dns", "shop.test", "no-such-scenario"], "no such file and no bundled scenario"),
        (["--dns", "shop.test", "postfix-pair", "--transaction"], "not --dns"),
    ],
)
def test_check_dns_without_what_it_needs_is_bad_input(capsys, args, says) -> None:
    assert main(["check", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert says in err


def test_the_readme_example_prints_what_the_readme_shows(capsys, tmp_path) -> None:
    """README's "Checking the domain's DNS": its scenario, checked now, prints its output."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Checking the domain's DNS", 1)[1]
    scenario = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = section.split("$ maildrill check shop-dns.yaml --dns shop.test\n", 1)[1]
    shown = shown.split("```", 1)[0]
    (tmp_path / "shop-dns.yaml").write_text(scenario)
    code = main(["check", str(tmp_path / "shop-dns.yaml"), "--dns", "shop.test"])
    out, err = capsys.readouterr()
    assert (code, err) == (1, "")
    assert re.sub(r"127\.0\.0\.1:\d+$", "127.0.0.1:PORT", out, flags=re.M) == shown


@pytest.mark.parametrize(
    ("publish", "found"),
    [(True, []), (False, ["dkim-missing"]), ("wrong", ["dkim-mismatch"])],
)
def test_the_keys_a_run_makes_are_served_and_known(tmp_path, keys, publish, found) -> None:
    """What `maildrill run` does with `postfix.dkim: {publish}` (issue 15 part 3), done for
    the check: its key published, or none, or another; the key signed with known."""
    scenario = _without(clean_scenario(keys), "shop.test", "s2._domainkey")
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    made = run_keys([SimpleNamespace(name="secondary", postfix=SimpleNamespace(dkim=DkimSpec(
        selector="s2", domain="shop.test", publish=publish)))])  # fmt: skip
    authority = served_zones(load_scenario(path), "shop.test", made.txt)
    signing = DkimKey("s2", "shop.test", made.signing[("s2", "shop.test")])
    sending = [Sender("secondary", "127.0.0.12", "secondary.maildrill.test", (signing,), 20)]
    facts, result = check_dns(
        "shop.test", sending, resolver=None, authority=authority, timeout_s=5.0
    )
    assert facts.served
    assert [f.code for f in result.findings] == found
    assert (
        facts.senders[0].dkim[0].key_matches is {True: True, False: None, "wrong": False}[publish]
    )


@pytest.mark.skipif(
    "postfix-auth" not in bundled_names(), reason="bundled with issue 15 part 7 (another branch)"
)
@pytest.mark.parametrize(
    ("name", "code", "found"),
    [
        ("postfix-auth", 1, ["[spf-not-covered]", "[dmarc-fail]"]),
        ("postfix-auth-aligned", 0, []),
    ],
)
def test_the_bundled_auth_drills_check_as_they_run(capsys, name, code, found) -> None:
    """The secondary that neither signs nor is in SPF is found before the drill shows it;
    aligned, the zone is clean (the primary's key made and published as a run does)."""
    assert main(["check", name, "--dns", "shop.test"]) == code
    out, _ = capsys.readouterr()
    assert [p.rsplit(" ", 1)[1] for p in problems(out)] == found
    assert "s1: key matches" in out
