"""DKIM for the Postfix instances under test, without running anything: the keys made per
run (their published record verifies what the private key signs; `publish: wrong` does
not), the run's zone with the key in it, the scenario rules for `dkim:`, and the files
OpenDKIM and Postfix are given."""

from __future__ import annotations

import io
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any, cast

import dkim
import dns.message
import pytest

from loadtest.dkim_keys import make_keys, published_records, txt_value, with_txt
from loadtest.dns_run import write_run_zones
from loadtest.mta_fleet import MtaFleet
from loadtest.opendkim import OpenDkim, OpenDkimError, write_keys
from loadtest.postfix import PostfixError
from loadtest.runlog import RunLog
from loadtest.scenario import parse_scenario
from loadtest.server_spec import DkimSpec
from maildrill.dns.files import load_zones
from tests.helpers import scenario_refused
from tests.unit.test_postfix_config import effective, instance

SHOP = {
    "shop.test": {
        "TXT": "v=spf1 ip4:127.0.0.11 -all",
        "_dmarc": {"TXT": "v=DMARC1; p=reject"},
    }
}
MESSAGE = b"From: news@shop.test\r\nTo: a@gmail.test\r\nSubject: s\r\n\r\nhello\r\n"


def pair(primary_dkim: Any = None, secondary_dkim: Any = None, zones: Any = SHOP,
         **extra: Any) -> dict[str, Any]:  # fmt: skip
    def mta(name: str, dkim_table: Any) -> dict[str, Any]:
        postfix = {"relay": "sink", **({"dkim": dkim_table} if dkim_table is not None else {})}
        return {"name": name, "postfix": {**postfix, **extra.get(name, {})}}

    data: dict[str, Any] = {
        "servers": [
            mta("primary", primary_dkim),
            {"name": "sink", "local": True},
            mta("secondary", secondary_dkim),
        ],
        "routing": {"servers": ["primary", "secondary"]},
        "campaign": {"schedule": [{"duration_s": 1, "rate": 1}]},
    }
    if zones is not None:
        data["dns"] = {"zones": zones}
    return data


def verifies(message: bytes, record: str | None) -> bool:
    """dkimpy's verdict with `record` as the only key in DNS."""
    return bool(
        dkim.verify(message, dnsfunc=lambda name, timeout=5: record.encode() if record else None)
    )


def signed(pem: bytes) -> bytes:
    return dkim.sign(MESSAGE, b"s1", b"shop.test", pem, include_headers=[b"from"]) + MESSAGE


def test_the_published_record_verifies_what_the_key_signs():
    spec = DkimSpec(selector="s1", domain="shop.test")
    (key,) = make_keys([spec]).values()
    assert key.record_name == "s1._domainkey.shop.test"
    assert key.published_b64 == key.public_b64
    (record,) = published_records([key]).values()
    assert record == txt_value(key.public_b64) == f"v=DKIM1; k=rsa; p={key.public_b64}"
    assert verifies(signed(key.private_pem), record)


def test_publish_wrong_publishes_another_key_and_false_none():
    wrong = make_keys([DkimSpec(selector="s1", domain="shop.test", publish="wrong")])
    (key,) = wrong.values()
    assert key.published_b64 not in (None, key.public_b64)
    (record,) = published_records([key]).values()
    assert not verifies(signed(key.private_pem), record)
    assert verifies(signed(key.private_pem), txt_value(key.public_b64))
    absent = make_keys([DkimSpec(selector="s1", domain="shop.test", publish=False)])
    assert published_records(absent.values()) == {}


def test_instances_naming_one_selector_and_domain_share_one_key():
    specs = [DkimSpec(selector=s, domain="shop.test") for s in ("S1", "s1", "s2")]
    keys = make_keys(specs)
    assert sorted(keys) == [("s1", "shop.test"), ("s2", "shop.test")]


def test_the_run_zone_serves_the_key(tmp_path: Path):
    scenario = parse_scenario(pair({"selector": "s1", "domain": "shop.test"}))
    keys = make_keys([DkimSpec(selector="s1", domain="shop.test")])
    paths = write_run_zones(scenario, tmp_path, published_records(keys.values()))
    served = load_zones(paths)  # what `python -m maildrill.dns` serves from them
    response = served.respond(dns.message.make_query("s1._domainkey.shop.test", "TXT"))
    (key,) = keys.values()
    assert b"".join(response.answer[0][0].strings).decode() == txt_value(key.public_b64)
    # The scenario's own records are all still there.
    spf = served.respond(dns.message.make_query("shop.test", "TXT"))
    assert b"".join(spf.answer[0][0].strings).decode() == SHOP["shop.test"]["TXT"]


def test_with_txt_refuses_a_name_in_no_zone():
    zones = parse_scenario(pair()).dns.build(allow_remote=False)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="none of the run's zones"):
        with_txt(zones, {"s1._domainkey.other.test": "v=DKIM1; p="})


# -- the scenario's rules -----------------------------------------------------------------


def test_a_key_to_publish_needs_a_zone_for_it():
    scenario_refused(
        pair({"selector": "s1", "domain": "other.test"}), "'primary'",
        "s1._domainkey.other.test", "none of the dns: zones", "publish: false",
    )  # fmt: skip
    scenario_refused(pair({"selector": "s1", "domain": "shop.test"}, zones=None),
                     "none of the dns: zones")  # fmt: skip
    parse_scenario(pair({"selector": "s1", "domain": "other.test", "publish": False}))
    parse_scenario(pair({"selector": "s1", "domain": "shop.test", "publish": False}, zones=None))


def test_the_zone_may_not_hold_the_key_record_already():
    zones = {"shop.test": {**SHOP["shop.test"], "s1._domainkey": {"TXT": "v=DKIM1; p=AAAA"}}}
    scenario_refused(pair({"selector": "s1", "domain": "shop.test"}, zones=zones),
                     "already has s1._domainkey.shop.test")  # fmt: skip
    parse_scenario(pair({"selector": "s1", "domain": "shop.test", "publish": False}, zones=zones))


def test_instances_sharing_a_key_agree_on_publishing_it():
    scenario_refused(
        pair({"selector": "s1", "domain": "shop.test"},
             {"selector": "s1", "domain": "shop.test", "publish": "wrong"}),
        "'secondary'", "'primary'", "one key per selector and domain",
    )  # fmt: skip
    parse_scenario(pair(*[{"selector": "s1", "domain": "shop.test"}] * 2))


@pytest.mark.parametrize(
    "table",
    [
        {"selector": "s1"},
        {"domain": "shop.test"},
        {"selector": "s1;x", "domain": "shop.test"},
        {"selector": "-s1", "domain": "shop.test"},
        {"selector": "s1\nx", "domain": "shop.test"},
        {"selector": "s1", "domain": "shop>.test"},
        {"selector": "s1", "domain": "shop.test", "publish": "maybe"},
        {"selector": "s1", "domain": "shop.test", "bits": 1024},
    ],
)
def test_a_dkim_table_is_checked(table):
    scenario_refused(pair(table), "dkim")


@pytest.mark.parametrize("name", ["smtpd_milters", "non_smtpd_milters"])
def test_with_dkim_the_milters_are_maildrills(name):
    data = pair({"selector": "s1", "domain": "shop.test"},
                primary={"settings": {name: "inet:127.0.0.1:1"}})  # fmt: skip
    scenario_refused({**data, "allow_remote": True}, name, "OpenDKIM")


# -- the files ----------------------------------------------------------------------------


def test_main_cf_gives_smtpd_and_local_mail_to_the_milter(tmp_path):
    values = effective(instance(tmp_path, milter="inet:127.0.0.1:8891").render()["main.cf"])
    assert values["smtpd_milters"] == "inet:127.0.0.1:8891"
    assert values["non_smtpd_milters"] == "$smtpd_milters"
    assert effective(instance(tmp_path).render()["main.cf"])["smtpd_milters"] == ""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"milter": "inet:203.0.113.1:8891"},
        {"milter": "unix:/tmp/x"},
        {"milter": "inet:127.0.0.1:8891\nrelayhost = [x]"},
        {"milter": "inet:127.0.0.1:8891", "settings": {"smtpd_milters": "inet:127.0.0.1:1"}},
    ],
)
def test_render_refuses_a_milter_that_is_not_its_opendkim(tmp_path, kwargs):
    with pytest.raises(PostfixError):
        instance(tmp_path, allow_remote=True, **kwargs).render()


def test_opendkim_signs_every_message_with_the_run_key_on_loopback(tmp_path):
    signer = OpenDkim("primary", tmp_path / "opendkim", tmp_path / "k.private", "s1",
                      "shop.test", port=8891)  # fmt: skip
    files = signer.render()
    conf = dict(
        line.split(" ", 1) for line in files["opendkim.conf"].splitlines() if line[:1] != "#"
    )
    assert conf["Socket"] == "inet:8891@127.0.0.1"
    assert conf["Mode"] == "s"
    assert conf["InternalHosts"] == "127.0.0.0/8"  # all Postfix relays for (mynetworks)
    assert conf["KeyTable"] == f"file:{tmp_path / 'opendkim' / 'keytable'}"
    assert conf["SigningTable"] == f"refile:{tmp_path / 'opendkim' / 'signingtable'}"
    assert files["keytable"] == f"run shop.test:s1:{tmp_path / 'k.private'}\n"
    assert files["signingtable"] == "* run\n"
    assert signer.milter == "inet:127.0.0.1:8891"


def test_opendkim_refuses_a_path_that_would_split_its_config(tmp_path):
    with pytest.raises(OpenDkimError, match="space, line break"):
        OpenDkim("p", tmp_path / "a b", tmp_path / "k", "s1", "shop.test", port=1).render()


def test_the_private_key_is_written_for_opendkim_alone(tmp_path):
    keys = make_keys([DkimSpec(selector="s1", domain="shop.test")])
    files = write_keys(keys, tmp_path / "dkim")
    (private,) = files.values()
    assert private == tmp_path / "dkim" / "s1._domainkey.shop.test.private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    (key,) = keys.values()
    assert private.read_bytes() == key.private_pem
    public = tmp_path / "dkim" / "s1._domainkey.shop.test.txt"
    assert public.read_text() == txt_value(key.public_b64) + "\n"
    try:
        user = pwd.getpwnam("opendkim").pw_uid
    except KeyError:
        return
    if os.geteuid() == 0:  # as root, OpenDKIM drops to its user, who must read it
        assert private.stat().st_uid == user


def test_a_key_file_already_there_is_narrowed_to_0600(tmp_path):
    stale = tmp_path / "dkim" / "s1._domainkey.shop.test.private"
    stale.parent.mkdir()
    stale.write_text("old")
    stale.chmod(0o644)
    keys = make_keys([DkimSpec(selector="s1", domain="shop.test")])
    (private,) = write_keys(keys, tmp_path / "dkim").values()
    assert private == stale
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


class _Stuck:
    """A Postfix instance whose `postfix stop` times out; records what it was asked."""

    def __init__(self, asked: list[str], name: str, fails: bool) -> None:
        self.asked, self.name, self.fails = asked, name, fails

    def stop(self) -> None:
        self.asked.append(f"stop {self.name}")
        if self.fails:
            raise subprocess.TimeoutExpired("postfix stop", 30)

    def running(self) -> bool:
        return False

    def queued(self) -> list[object]:
        return []

    def troubles(self) -> list[str]:
        return []


class _Signer:
    def __init__(self, asked: list[str], name: str) -> None:
        self.asked, self.name = asked, name

    def terminate(self) -> None:
        self.asked.append(f"terminate {self.name}")

    def stop(self) -> None:
        self.asked.append(f"signer stop {self.name}")


def test_signers_stop_and_keys_go_even_when_an_instance_will_not_stop(tmp_path):
    """A `postfix stop` that times out: the other instance is stopped all the same, every
    OpenDKIM is stopped and no private key stays on disk; the error is raised after."""
    keys = make_keys([DkimSpec(selector="s1", domain="shop.test")])
    files = write_keys(keys, tmp_path / "dkim")
    fleet = MtaFleet(cast(Any, None), tmp_path, RunLog(out=io.StringIO()), cast(Any, None))
    asked: list[str] = []
    fleet.instances = cast(Any, {"primary": _Stuck(asked, "primary", fails=True),
                                 "secondary": _Stuck(asked, "secondary", fails=False)})  # fmt: skip
    fleet.opendkim = cast(Any, {"primary": _Signer(asked, "primary")})
    fleet.key_files = files
    with pytest.raises(subprocess.TimeoutExpired):
        fleet.stop()
    assert asked == ["stop primary", "stop secondary", "signer stop primary"]
    assert not any(p.exists() for p in files.values())
    assert (tmp_path / "dkim" / "s1._domainkey.shop.test.txt").exists()  # the public half
