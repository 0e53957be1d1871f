"""The run's DNS server on 127.0.0.1, port 0, as its own process (`python -m maildrill.dns`
on the master files `write_zones` leaves): the resolver's answers for each record type,
NXDOMAIN against NODATA, REFUSED outside the zones, UDP and TCP, truncation; and `dig`
gets the same answers as the resolver."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from maildrill.dns.files import write_zones
from maildrill.dns.resolver import Lookup, Resolver, Status
from maildrill.dns.zone import parse_zones
from tests.helpers import REPO

DKIM = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 9
ZONES: dict[str, Any] = {
    "shop.test": {
        "MX": ["10 mx1.shop.test", "20 mx2.shop.test"],
        "TXT": "v=spf1 ip4:127.0.0.11 -all",
        "mx1": {"A": "127.0.0.11", "AAAA": "::1"},
        "mx2": {"A": "127.0.0.12"},
        "_dmarc": {"TXT": "v=DMARC1; p=reject; rua=mailto:dmarc@shop.test"},
        "s1._domainkey": {"TXT": DKIM},
        "www": {"CNAME": "mx1.shop.test"},
        "big": {"TXT": [f"{i:02d}" + "x" * 200 for i in range(30)]},
    },
    "127.in-addr.arpa": {"127.0.0.11": {"PTR": "mx1.shop.test"}},
}
DIG = shutil.which("dig")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    paths = write_zones(parse_zones(ZONES), tmp_path_factory.mktemp("dns"))
    child = subprocess.Popen(
        [sys.executable, "-m", "maildrill.dns", *map(str, paths)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())["dns"]
        yield ready["host"], ready["port"]
    finally:
        child.terminate()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == 0


@pytest.fixture
def resolver(server: tuple[str, int]) -> Resolver:
    return Resolver(*server, timeout=5.0)


def test_it_listens_on_loopback_on_a_port_of_its_own(server: tuple[str, int]) -> None:
    assert server[0] == "127.0.0.1"
    assert server[1] > 0


@pytest.mark.parametrize(
    ("name", "rtype", "records"),
    [
        ("shop.test", "MX", ("10 mx1.shop.test", "20 mx2.shop.test")),
        ("shop.test", "TXT", ("v=spf1 ip4:127.0.0.11 -all",)),
        ("mx1.shop.test", "A", ("127.0.0.11",)),
        ("mx1.shop.test", "AAAA", ("::1",)),
        ("MX2.Shop.Test", "A", ("127.0.0.12",)),
        ("_dmarc.shop.test", "TXT", ("v=DMARC1; p=reject; rua=mailto:dmarc@shop.test",)),
        ("s1._domainkey.shop.test", "TXT", (DKIM,)),  # 414 bytes, served as two strings
        ("11.0.0.127.in-addr.arpa", "PTR", ("mx1.shop.test",)),
        ("www.shop.test", "A", ("127.0.0.11",)),  # through its CNAME
        ("www.shop.test", "CNAME", ("mx1.shop.test",)),
    ],
)
def test_each_record_type_is_answered(
    resolver: Resolver, name: str, rtype: str, records: tuple[str, ...]
) -> None:
    lookup = resolver.lookup(name, rtype)
    assert lookup.status is Status.OK
    assert lookup.records == records
    assert lookup.ttl == 300


def test_the_mx_records_and_the_ptr_shortcut(resolver: Resolver) -> None:
    assert [(m.preference, m.host) for m in resolver.mx("shop.test").mx()] == [
        (10, "mx1.shop.test"),
        (20, "mx2.shop.test"),
    ]
    assert resolver.ptr("127.0.0.11").records == ("mx1.shop.test",)


@pytest.mark.parametrize(
    ("name", "rtype", "status", "detail"),
    [
        ("nope.shop.test", "A", Status.NXDOMAIN, ""),
        ("mx1.shop.test", "TXT", Status.NODATA, ""),
        ("_domainkey.shop.test", "TXT", Status.NODATA, ""),  # exists: s1._domainkey below
        ("12.0.0.127.in-addr.arpa", "PTR", Status.NXDOMAIN, ""),
        ("gmail.com", "MX", Status.TEMPERROR, "REFUSED"),
    ],
)
def test_nxdomain_nodata_and_refused_are_told_apart(
    resolver: Resolver, name: str, rtype: str, status: Status, detail: str
) -> None:
    lookup = resolver.lookup(name, rtype)
    assert (lookup.status, lookup.detail, lookup.records) == (status, detail, ())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_negative_answers_carry_the_soa_over_udp_and_tcp(
    server: tuple[str, int], transport: str
) -> None:
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    for name, rcode in [("nope.shop.test", dns.rcode.NXDOMAIN), ("mx1.shop.test", 0)]:
        response = send(dns.message.make_query(name, "TXT"), server[0], 5.0, server[1])
        assert response.rcode() == rcode
        assert response.flags & dns.flags.AA
        assert [r.to_text().split()[3] for r in response.authority] == ["SOA"]
    refused = send(dns.message.make_query("example.org", "A"), server[0], 5.0, server[1])
    assert refused.rcode() == dns.rcode.REFUSED


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(
    server: tuple[str, int], resolver: Resolver
) -> None:
    query = dns.message.make_query("big.shop.test", "TXT")  # no EDNS: 512 bytes at most
    udp = dns.query.udp(query, server[0], 5.0, server[1])
    assert udp.flags & dns.flags.TC
    tcp = dns.query.tcp(query, server[0], 5.0, server[1])
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 30
    assert len(resolver.txt("big.shop.test").records) == 30  # the resolver retried on TCP


def test_a_stopped_server_is_a_temperror_not_an_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port nobody answers on
        lookup = Resolver("127.0.0.1", s.getsockname()[1], timeout=0.5).a("mx1.shop.test")
    assert lookup.status is Status.TEMPERROR
    assert lookup.detail == "timeout"


def test_tcp_refuses_an_oversized_length_and_serves_several_queries(
    server: tuple[str, int],
) -> None:
    with socket.create_connection(server, timeout=5.0) as conn:
        for name in ("mx1.shop.test", "mx2.shop.test"):
            wire = dns.message.make_query(name, "A").to_wire()
            conn.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", _read(conn, 2))
            assert dns.message.from_wire(_read(conn, length)).answer
        conn.sendall(struct.pack("!H", 60000))  # over MAX_QUERY_BYTES: closed, not read
        assert conn.recv(1) == b""


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk
        data += chunk
    return data


# -- dig gets what the resolver gets -------------------------------------------------------


def dig_short(server: tuple[str, int], name: str, rtype: str, *extra: str) -> tuple[str, ...]:
    """dig's +short answer, each record as the resolver writes it."""
    assert DIG is not None
    out = subprocess.run(
        [
            DIG,
            f"@{server[0]}",
            "-p",
            str(server[1]),
            "+short",
            "+norecurse",
            "+time=5",
            "+tries=1",
            *extra,
            name,
            rtype,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    lines = [line for line in out.splitlines() if line and not line.startswith(";")]
    return tuple(sorted(_dig_record(line, rtype) for line in lines))


def _dig_record(line: str, rtype: str) -> str:
    if rtype == "TXT":  # "abc" "def": the strings, joined, quotes and escapes undone
        strings = json.loads("[" + line.replace('" "', '", "') + "]")
        return "".join(strings)
    return line.removesuffix(".")


def dig_status(server: tuple[str, int], name: str, rtype: str) -> str:
    assert DIG is not None
    out = subprocess.run(
        [
            DIG,
            f"@{server[0]}",
            "-p",
            str(server[1]),
            "+norecurse",
            "+time=5",
            "+tries=1",
            name,
            rtype,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.split("status: ", 1)[1].split(",", 1)[0]


@pytest.mark.skipif(DIG is None, reason="dig (Debian dnsutils) is not installed")
@pytest.mark.parametrize(
    ("name", "rtype"),
    [
        ("shop.test", "MX"),
        ("shop.test", "TXT"),
        ("mx1.shop.test", "A"),
        ("mx1.shop.test", "AAAA"),
        ("_dmarc.shop.test", "TXT"),
        ("s1._domainkey.shop.test", "TXT"),
        ("11.0.0.127.in-addr.arpa", "PTR"),
        ("www.shop.test", "CNAME"),
        ("big.shop.test", "TXT"),
    ],
)
def test_dig_gets_the_same_answers_as_the_resolver(
    server: tuple[str, int], resolver: Resolver, name: str, rtype: str
) -> None:
    lookup: Lookup = resolver.lookup(name, rtype)
    assert lookup.status is Status.OK
    assert dig_short(server, name, rtype) == lookup.records


@pytest.mark.skipif(DIG is None, reason="dig (Debian dnsutils) is not installed")
def test_dig_sees_the_same_negative_answers(server: tuple[str, int], resolver: Resolver) -> None:
    expected = {Status.NXDOMAIN: "NXDOMAIN", Status.NODATA: "NOERROR"}
    for name, rtype in [("nope.shop.test", "A"), ("mx1.shop.test", "TXT")]:
        assert dig_status(server, name, rtype) == expected[resolver.lookup(name, rtype).status]
    assert dig_status(server, "gmail.com", "MX") == "REFUSED"
    assert resolver.lookup("gmail.com", "MX").detail == "REFUSED"
