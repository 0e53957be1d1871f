"""An authoritative DNS server for the run's zones, over UDP and TCP on loopback.

It answers as a real authoritative server does, and nothing more: the AA flag on answers
from its zones; NXDOMAIN or NODATA (NOERROR, empty answer) with the zone's SOA in the
authority section (RFC 2308) so a resolver can cache the negative answer; an empty
non-terminal (`_domainkey.shop.test` when `s1._domainkey.shop.test` exists) is NODATA, not
NXDOMAIN (RFC 8020); a CNAME followed within its zones; REFUSED for any name outside them,
never recursing or forwarding (the run must not reach a real resolver); NOTIMP for opcodes
other than QUERY; FORMERR for what does not parse, and nothing at all for a message that is
itself a response (no loops between two servers).

`Authority` decides the answer (no sockets: the unit tier tests it); `DnsServer` carries it
over UDP (at most the query's EDNS payload, 512 bytes without EDNS; a larger answer goes
out with TC set, and the client asks again over TCP) and TCP (RFC 7766: two-byte length
prefix, several queries per connection). Input is bounded: a datagram over
`MAX_QUERY_BYTES` is dropped, TCP connections are capped, idle ones closed.

DNS faults (`maildrill.dns.faults`, on the `board` the authority may hold) change answers
for names of its zones only (REFUSED stays REFUSED): `reply` asks the board which are in
force as each query comes, answers SERVFAIL (not authoritative) or NXDOMAIN (with the SOA),
serves a `records` fault's sets instead of the zone's, or says to send nothing or to send
later; the servers carry that out (a later UDP reply is a timer: nothing else waits).
Each query and its answer go to the query `log` (dns-queries.csv) when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

from maildrill.dns.board import ActiveDnsFault, FaultBoard
from maildrill.dns.faults import Hold, Silence
from maildrill.dns.query_log import QueryLog
from maildrill.netaddr import is_loopback

MAX_QUERY_BYTES = 4096  # a query is one question: anything larger is not one
UDP_PAYLOAD_CAP = 4096  # the most maildrill sends over UDP, whatever a client offers
PLAIN_UDP = 512  # RFC 1035: the most without EDNS
MAX_TCP_CONNECTIONS = 64
MAX_TCP_QUERIES = 1000  # per connection
TCP_IDLE_S = 10.0
MAX_CNAME_HOPS = 8
BIND_ATTEMPTS = 20  # finding a port free for both TCP and UDP

_IN = dns.rdataclass.IN


class Authority:
    """The zones, and the answer to a query from them: pure, no sockets."""

    def __init__(
        self,
        zones: Iterable[dns.zone.Zone],
        board: FaultBoard | None = None,
        log: QueryLog | None = None,
    ) -> None:
        self.zones = {zone.origin: zone for zone in zones if zone.origin is not None}
        self.board = board  # DNS faults (maildrill.dns.board): none, none ever apply
        self.log = log  # the query journal (dns-queries.csv), when the run keeps one
        # Every name in a zone and each of its ancestors up to the origin: a name without
        # a node of its own that is among these is an empty non-terminal (NODATA).
        self._exists: set[dns.name.Name] = set()
        for origin, zone in self.zones.items():
            for name in zone.nodes:
                absolute = name if name.is_absolute() else name.derelativize(origin)
                while absolute.is_subdomain(origin):
                    self._exists.add(absolute)
                    if absolute == origin:
                        break
                    absolute = absolute.parent()

    def zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        """The zone with the longest origin that holds `name`; None: not ours."""
        best: dns.zone.Zone | None = None
        for origin, zone in self.zones.items():
            if name.is_subdomain(origin) and (
                best is None or best.origin is None or len(origin) > len(best.origin)
            ):
                best = zone
        return best

    def respond(self, query: dns.message.Message) -> dns.message.Message:
        """The answer from the zones alone, no fault in force."""
        return self._respond(query, Outcome())

    def _respond(self, query: dns.message.Message, outcome: Outcome) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=UDP_PAYLOAD_CAP)
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        zone = self.zone_for(question.name)
        if question.rdclass != _IN or zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if outcome.faults:  # only names of our zones: REFUSED stays REFUSED
            assert self.board is not None
            decisions, outcome.acted = self.board.decide(
                question.name, question.rdtype, outcome.faults
            )
            for decision in decisions:
                if isinstance(decision, Hold):
                    outcome.delay += decision.seconds
                elif isinstance(decision, Silence):
                    outcome.silent = True
                    return response
                elif decision.code != dns.rcode.NXDOMAIN:  # SERVFAIL: not authoritative
                    response.set_rcode(decision.code)
                    return response
                else:
                    response.flags |= dns.flags.AA
                    response.set_rcode(decision.code)
                    self._negative(response, zone)
                    return response
        response.flags |= dns.flags.AA
        self._answer(response, zone, question.name, question.rdtype, outcome)
        return response

    def _answer(
        self,
        response: dns.message.Message,
        zone: dns.zone.Zone,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        outcome: Outcome,
    ) -> None:
        overlay = self.board.overlay(outcome.faults) if outcome.faults and self.board else {}
        for _ in range(MAX_CNAME_HOPS):
            if (name, rdtype) in overlay:  # a `records` fault's set; empty: taken away
                rdataset, fault_id = overlay[name, rdtype]
                outcome.acted.append(fault_id)
                if len(rdataset):
                    response.answer.append(_rrset(name, rdataset))
                else:
                    self._negative(response, zone)
                return
            node = zone.get_node(name)
            if node is None:
                if name not in self._exists:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                self._negative(response, zone)
                return
            if rdtype == dns.rdatatype.ANY:
                for rdataset in node.rdatasets:
                    response.answer.append(_rrset(name, rdataset))
                return
            found = node.get_rdataset(_IN, rdtype)
            if found is not None:
                response.answer.append(_rrset(name, found))
                return
            cname = node.get_rdataset(_IN, dns.rdatatype.CNAME)
            if cname is None:
                self._negative(response, zone)
                return
            response.answer.append(_rrset(name, cname))
            name = next(iter(cname)).target
            next_zone = self.zone_for(name)
            if next_zone is None:  # out of our zones: the client follows it, or not
                return
            zone = next_zone

    def _negative(self, response: dns.message.Message, zone: dns.zone.Zone) -> None:
        assert zone.origin is not None
        soa = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
        if soa is not None:
            rrset = _rrset(zone.origin, soa)
            rrset.ttl = min(soa.ttl, next(iter(soa)).minimum)  # RFC 2308 section 5
            response.authority.append(rrset)

    def handle(self, wire: bytes, *, max_size: int | None) -> bytes | None:
        """The reply to a message off the wire; None: no reply at all. `max_size` is UDP's
        limit (the answer is truncated with TC beyond it); None: TCP's 65535."""
        return self.reply(wire, max_size=max_size).wire

    def reply(self, wire: bytes, *, max_size: int | None, peer: str = "") -> Outcome:
        """`handle`'s reply with what the DNS faults in force did to it: held back
        (`delay`), or not sent at all (`silent`); journaled in the query log with the
        `peer` (the asker's address) that sent it."""
        if len(wire) > MAX_QUERY_BYTES:
            return Outcome()
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return Outcome(wire=_formerr(wire))
        if query.flags & dns.flags.QR:
            return Outcome()
        outcome = Outcome(faults=self.board.in_force() if self.board is not None else [])
        response = self._respond(query, outcome)
        if self.log is not None:
            sent = None if outcome.silent else response
            transport = "tcp" if max_size is None else "udp"
            self.log.write(query, sent, transport, outcome.acted, outcome.delay, peer)
        if not outcome.silent:
            outcome.wire = self._encode(query, response, max_size)
        return outcome

    @staticmethod
    def _encode(
        query: dns.message.Message, response: dns.message.Message, max_size: int | None
    ) -> bytes:
        if max_size is None:
            try:
                return response.to_wire(max_size=65535)
            except dns.exception.TooBig:
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
        offered = query.payload if query.edns >= 0 else PLAIN_UDP
        limit = max(PLAIN_UDP, min(offered, UDP_PAYLOAD_CAP, max_size))
        return response.to_wire(max_size=limit, prefer_truncation=True)


@dataclass
class Outcome:
    """One query's reply (None: none) and what the faults in force did to it."""

    wire: bytes | None = None
    faults: list[ActiveDnsFault] = field(default_factory=list)  # in force when it came
    acted: list[str] = field(default_factory=list)  # ids of the faults that changed it
    delay: float = 0.0  # seconds the reply is held back
    silent: bool = False  # no reply: the client times out


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header at least reads; a response or less: no reply."""
    if len(wire) < 12:
        return None
    ident, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    reply_flags = dns.flags.QR | (flags & (0x7800 | dns.flags.RD)) | dns.rcode.FORMERR
    return struct.pack("!HHHHHH", ident, reply_flags, 0, 0, 0, 0)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        outcome = self.authority.reply(data, max_size=UDP_PAYLOAD_CAP, peer=str(addr[0]))
        if outcome.wire is None or self.transport is None:
            return
        if outcome.delay > 0:  # a latency fault: the reply goes out later, nothing waits
            loop = asyncio.get_running_loop()
            loop.call_later(outcome.delay, self._send, outcome.wire, addr)
        else:
            self.transport.sendto(outcome.wire, addr)

    def _send(self, wire: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)

    def error_received(self, exc: Exception) -> None:  # an ICMP error for a past reply
        pass


class DnsServer:
    """The authority served on one port, UDP and TCP alike, of a loopback address.

    `await start()` returns (host, port); `await close()` stops both. Also an async
    context manager."""

    def __init__(self, authority: Authority, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"{host}: the run's DNS server listens on loopback only")
        self.authority = authority
        self.host = host
        self.port = port
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._slots = asyncio.Semaphore(MAX_TCP_CONNECTIONS)
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def start(self) -> tuple[str, int]:
        last: OSError | None = None
        for _ in range(BIND_ATTEMPTS if self.port == 0 else 1):
            tcp = await asyncio.start_server(self._client, self.host, self.port)
            port = tcp.sockets[0].getsockname()[1]
            try:
                self._udp = await self._bind_udp(port)
            except OSError as exc:  # the port is taken for UDP: another one
                last = exc
                tcp.close()
                await tcp.wait_closed()
                continue
            self._tcp, self.port = tcp, port
            return self.address
        raise OSError(f"no port free for both TCP and UDP on {self.host}: {last}")

    async def _bind_udp(self, port: int) -> asyncio.DatagramTransport:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.authority), sock=sock)
        return transport

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._clients):
                task.cancel()
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._slots.locked() or task is None:  # too many: the client tries again later
            writer.close()
            return
        self._clients.add(task)
        async with self._slots:
            try:
                await self._serve(reader, writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                pass
            finally:
                self._clients.discard(task)
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else ""
        for _ in range(MAX_TCP_QUERIES):
            head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_S)
            (length,) = struct.unpack("!H", head)
            if length < 12 or length > MAX_QUERY_BYTES:
                return
            wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_S)
            outcome = self.authority.reply(wire, max_size=None, peer=peer)
            if outcome.silent:  # a timeout fault: this query is never answered
                continue
            reply = outcome.wire
            if reply is None:
                return
            if outcome.delay > 0:
                await asyncio.sleep(outcome.delay)
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
