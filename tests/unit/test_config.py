"""Malformed configs fail with a ConfigError naming the field and the problem, on one line."""

from __future__ import annotations

import pytest

from sinks.config import ConfigError, load_config, parse_config
from sinks.effects import EFFECTS


def error_of(data) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(data, "sinks.yaml")
    message = str(raised.value)
    assert message.startswith("sinks.yaml: ")
    assert "\n" not in message
    return message


def one_sink(**fields) -> dict:
    return {"sinks": [{"name": "mx", **fields}]}


def test_a_valid_config_keeps_every_field():
    config = parse_config(
        {
            "seed": 4,
            "sinks": [
                {
                    "name": "primary",
                    "port": 2525,
                    "behaviours": [{"kind": "throttle", "rate": 5, "preset": "gmail"}],
                    "faults": [{"kind": "down", "at": 10, "duration": 5}],
                    "starttls": True,
                    "auth": {"credentials": {"u": "p"}},
                },
                {"name": "secondary", "host": "::1", "starttls": {"cert": "c", "key": "k"}},
            ],
        }
    )
    primary, secondary = config.sinks
    assert primary.behaviours[0].params == {"rate": 5, "preset": "gmail"}
    assert (primary.faults[0].at, primary.faults[0].duration) == (10, 5)
    assert primary.tls is not None
    assert primary.tls.cert is None, "a self-signed pair is made at start"
    assert secondary.tls is not None
    assert str(secondary.tls.cert) == "c"
    assert primary.banner_name == "primary.maildrill.test"


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        (
            {"behaviours": [{"kind": "nope"}]},
            "sinks[0].behaviours[0]: unknown kind 'nope'; known: busy,",
        ),
        ({"faults": [{"kind": "melt", "at": 1}]}, "sinks[0].faults[0]: unknown kind 'melt'"),
        ({"behaviours": [{"rate": 5}]}, "sinks[0].behaviours[0].kind: Field required"),
        (
            {"behaviours": [{"kind": "throttle", "rate": -1}]},
            "sinks[0].behaviours[0]: throttle: rate: Input should be greater than 0",
        ),
        ({"behaviours": [{"kind": "throttle"}]}, "throttle: rate: Field required"),
        (
            {"behaviours": [{"kind": "throttle", "rate": 1, "per": "planet"}]},
            "throttle: per: Input should be 'sink', 'client' or 'domain'",
        ),
        (
            {"behaviours": [{"kind": "throttle", "rate": 1, "per": "domain", "stage": "mail"}]},
            "per=domain needs stage rcpt or dot",
        ),
        (
            {"behaviours": [{"kind": "throttle", "rate": 1, "reply": "slow down"}]},
            "throttle: not an SMTP reply: 'slow down'",
        ),
        (
            {"faults": [{"kind": "latency", "ms": 5, "at": 0, "colour": "red"}]},
            "sinks[0].faults[0]: latency: colour: Extra inputs are not permitted",
        ),
        (
            {"behaviours": [{"kind": "reject", "stage": "dot", "code": 550, "enhanced": "4.1.1"}]},
            "enhanced code 4.1.1 does not match 550",
        ),
        ({"behaviours": [{"kind": "drop", "probability": 0}]}, "probability: Input should be"),
        ({"behaviours": [{"kind": "flap", "period_s": 1, "duty": 1.5}]}, "duty: Input should be"),
        ({"faults": [{"kind": "down"}]}, "sinks[0].faults[0].at: Field required"),
        ({"faults": [{"kind": "down", "at": -1}]}, "sinks[0].faults[0].at: Input should be"),
        ({"faults": [{"kind": "down", "at": 1, "duration": 0}]}, "faults[0].duration: Input"),
        ({"name": "bad name"}, "sinks[0].name: String should match pattern"),
        ({"port": 70000}, "sinks[0].port: Input should be less than or equal to 65535"),
        ({"size_limit": -1}, "sinks[0].size_limit: Input should be greater than or equal to 0"),
        ({"colour": "red"}, "sinks[0].colour: Extra inputs are not permitted"),
        ({"auth": {"mechanisms": ["CRAM-MD5"]}}, "sinks[0].auth.mechanisms[0]: Input should be"),
        ({"auth": {"mechanisms": []}}, "sinks[0].auth.mechanisms: List should have at least 1"),
    ],
)
def test_bad_sink_fields_are_named(sink, expected):
    assert expected in error_of(one_sink(**sink))


def test_known_kinds_are_listed_in_the_error():
    message = error_of(one_sink(behaviours=[{"kind": "nope"}]))
    assert message.endswith("known: " + ", ".join(sorted(EFFECTS)))


@pytest.mark.parametrize(
    ("starttls", "expected"),
    [
        (
            {"cert": "x.pem"},
            "sinks[0].starttls: give both cert and key, or neither for a self-signed certificate",
        ),
        ({"cert": "c", "key": "k", "ca": "x"}, "sinks[0].starttls.ca: Extra inputs"),
        (3, "sinks[0].starttls: "),
    ],
)
def test_starttls_errors_name_the_problem_not_pydantic_internals(starttls, expected):
    message = error_of(one_sink(starttls=starttls))
    assert expected in message
    assert "function-after" not in message
    assert "valid boolean" not in message or isinstance(starttls, int)
    assert message.count(";") == 0, "one problem, said once"


@pytest.mark.parametrize(
    "field",
    [
        {"behaviours": [{"kind": "latency", "ms": float("inf")}]},
        {"behaviours": [{"kind": "throttle", "rate": float("inf")}]},
        {"faults": [{"kind": "down", "at": 1, "duration": float("inf")}]},
        {"faults": [{"kind": "down", "at": float("inf")}]},
        {"idle_timeout_s": float("inf")},
    ],
)
def test_numbers_must_be_finite(field):
    assert "finite number" in error_of(one_sink(**field))


def test_sink_names_must_be_unique():
    message = error_of({"sinks": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})
    assert message == "sinks.yaml: sink names must be unique; repeated: a"


def test_ports_must_not_be_used_twice():
    data = {"sinks": [{"name": "a", "port": 2525}, {"name": "b", "control_port": 2525}]}
    assert error_of(data) == "sinks.yaml: ports used twice: 2525"


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "mail.example.com", "::"])
def test_non_loopback_host_needs_allow_remote(host):
    message = error_of(one_sink(host=host))
    assert f"sink 'mx': host '{host}' is not loopback" in message
    assert "allow_remote: true" in message
    config = parse_config({"allow_remote": True, **one_sink(host=host)})
    assert config.sinks[0].host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_nothing(host):
    assert parse_config(one_sink(host=host)).sinks[0].host == host


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "sinks: Field required"),
        ({"sinks": []}, "sinks: List should have at least 1 item"),
        ({"sinks": [{"name": "a"}], "colour": 1}, "colour: Extra inputs are not permitted"),
    ],
)
def test_top_level_errors(data, expected):
    assert expected in error_of(data)


def test_load_config_reads_yaml(tmp_path):
    path = tmp_path / "sinks.yaml"
    path.write_text("sinks:\n  - name: mx\n    behaviours:\n      - {kind: busy}\n")
    assert load_config(path).sinks[0].behaviours[0].kind == "busy"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sinks:\n  - name: a\n    host: [\n", "not valid YAML: "),
        ("sinks:\n\t- name: a\n", "not valid YAML: "),
        ("- just\n- a list\n", "expected a mapping with a 'sinks' list"),
        ("", "expected a mapping with a 'sinks' list"),
        ("sinks:\n  - name: a\n    behaviours: [{kind: nope}]\n", "unknown kind 'nope'"),
    ],
)
def test_load_config_errors_are_one_line(tmp_path, text, expected):
    path = tmp_path / "sinks.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_errors_give_the_position(tmp_path):
    path = tmp_path / "sinks.yaml"
    path.write_text("sinks:\n\t- name: a\n")
    with pytest.raises(ConfigError, match=r"line 2, column 1"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read: No such file or directory"):
        load_config(tmp_path / "absent.yaml")


def test_verify_takes_a_loopback_dns_server_and_a_provider():
    from sinks.config import parse_config

    cfg = parse_config(
        {"sinks": [{"name": "gmail", "verify": {"dns": "127.0.0.1:5353", "enforce": "gmail"}}]}
    )
    verify = cfg.sinks[0].verify
    assert verify is not None
    assert verify.server == ("127.0.0.1", 5353)
    for bad, said in (
        ({"dns": "127.0.0.1"}, "host:port"),
        ({"dns": "8.8.8.8:53"}, "not loopback"),
        ({"dns": "127.0.0.1:53", "enforce": "aol"}, "enforce"),
    ):
        with pytest.raises(ConfigError, match=said):
            parse_config({"sinks": [{"name": "s", "verify": bad}]})
