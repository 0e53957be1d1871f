"""The MX sets of a scenario's `mx:` entries are asked of its named `resolver:` only once
the rest of the scenario validates and, for `maildrill run`, once the run is confirmed
(--yes): a file with other mistakes, or a run not confirmed, sends no query. The "resolver"
is a UDP socket this test binds on 127.0.0.1 (port 0) and reads without blocking after the
command: a query sent would be there. A real one (tests.helpers.dns_child) shows that what
the rest of the file says of the MX hosts (routes naming them) still validates."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.cli import main
from tests.helpers import dns_child


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def packets(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            return count
        count += 1


def write(tmp_path: Path, resolver: str, extra: str = "") -> Path:
    path = tmp_path / "mx.yaml"
    path.write_text(
        "name: asked-last\nallow_remote: true\n"
        f"resolver: {{server: '{resolver}', timeout_ms: 200}}\n"
        "servers: [{mx: shop.test, port: 2525}]\n"
        "campaign: {schedule: [{duration_s: 1, rate: 1}]}\n" + extra
    )
    return path


@pytest.mark.parametrize("command", ["run", "capacity"])  # capacity's `all` curve routes too
def test_without_yes_the_resolver_is_asked_nothing(listener, tmp_path, capsys, command):
    where = f"127.0.0.1:{listener.getsockname()[1]}"
    path = write(tmp_path, where)
    assert main([command, str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"maildrill: {path}: resolver {where} is asked for the MX sets and the senders send "
        f"to any server the resolver {where} names: pass --yes to confirm\n"
    )
    assert packets(listener) == 0
    assert not (tmp_path / "run").exists()


OUTSIDE = {  # servers: what is named outside loopback
    "target": ("[{name: local, local: true}, {name: far, host: 192.0.2.10, port: 25}]",
               "far 192.0.2.10:25"),
    "relay": ("[{name: proxy, local: true,"
              " sink: {mode: proxy, upstream: {host: 192.0.2.10, port: 25}}}]",
              "proxy's sink relaying to 192.0.2.10:25"),
    "listener": ("[{name: mx, local: true, host: 198.18.0.5, port: 2525}]",
                 "mx's sink listening on 198.18.0.5"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "kind"),
    [("capacity", "target"), ("run", "relay"), ("sinks", "relay"), ("capacity", "relay"),
     ("sinks", "listener")],
)  # fmt: skip
def test_what_reaches_outside_loopback_needs_yes(tmp_path, capsys, command, kind):
    """A server elsewhere (the `all` capacity curve routes to it), a backup MX or proxy
    forwarding elsewhere, a sink listening elsewhere (all allowed by allow_remote): `run`,
    `sinks` and `capacity` start none of it without a person's yes, and write nothing."""
    servers, named = OUTSIDE[kind]
    path = tmp_path / "outside.yaml"
    path.write_text(
        f"name: outside\nallow_remote: true\nservers: {servers}\n"
        "campaign: {schedule: [{duration_s: 1, rate: 1}]}\n"
    )
    assert main([command, str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"maildrill: outside reaches outside this machine ({named}): pass --yes to confirm\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("users: 0\n", "users: Input should be greater than or equal to 1"),
        ("routing: {servers: [nope.shop.test]}\nfaults: [{at: 0, kind: nope, target: x}]\n",
         "faults[0]"),
        ("slo: ['nonsense <']\n", "slo"),
    ],
)  # fmt: skip
def test_a_file_with_other_mistakes_asks_the_resolver_nothing(
    listener, tmp_path, capsys, extra, expected
):
    path = write(tmp_path, f"127.0.0.1:{listener.getsockname()[1]}", extra)
    for command in (["validate", str(path)], ["run", str(path), "--yes"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert expected in err
    assert packets(listener) == 0


def test_routes_naming_mx_hosts_validate_before_and_after_the_lookup(tmp_path, capsys):
    zones = {"shop.test": {"MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
                           "mx1": {"A": "127.0.0.21"}, "mx2": {"A": "127.0.0.22"}}}  # fmt: skip
    with dns_child(zones, tmp_path / "dns", "asked-last-token") as (ready, _child):
        where = f"{ready['host']}:{ready['port']}"
        ok = write(tmp_path, where, "routing: {servers: [mx2.shop.test, mx1.shop.test]}\n")
        assert main(["validate", str(ok)]) == 0
        assert "2 servers" in capsys.readouterr().out
        bad = write(tmp_path, where, "routing: {servers: [mx3.shop.test]}\n")
        assert main(["validate", str(bad)]) == 2
    assert "routing: unknown server 'mx3.shop.test'" in capsys.readouterr().err
