"""A fault proxy: TCP relayed between clients and a server maildrill does not own.

A sink config with `mode: proxy` and an `upstream` listens like a sink, takes the same
control API and fault timeline, and journals fault transitions the same way
(`faults-NAME.csv`); but what it says is the upstream's. Faults act on the way:

- at the connection: `down` (listener closed, relayed sessions cut), `hang` (accepted,
  the upstream not reached while it lasts; with `scope: new`, never), `busy` and
  `connection_cap` (a 421 without reaching the upstream), `reset` (a TCP RST);
- on the SMTP session the proxy follows (`sinks.smtp_watch`): `drop` (the final dot goes
  through, the client is cut before the server's reply comes back: RFC 1047), `reset` at a
  command;
- on the bytes, per direction: `latency` (each chunk held), `bandwidth` (the link paced)
  and `hang` (nothing passes either way on open connections until it clears, unless
  `scope: new`; see sinks.effects.link_hang).

`proxy-NAME.csv` journals each connection (`open`, `close` with bytes each way and what
ended it) and each message whose end went by (`message`: its X-Maildrill-Id, size and the
server's reply to the final dot, or the fault that cut it), so an analysis can tell which
messages passed. After STARTTLS the session is opaque: bytes still flow and link faults
still apply, but messages are not seen (no `message` rows, no `drop`).

Each connection holds a bounded amount, whatever its peers do, because every stage waits
for the next one (back-pressure, both ways): a side's reader pauses its socket past 2 x
READ_SIZE unread (asyncio's StreamReader); a Link takes at most QUEUE_CHUNKS chunks of one
read each, held or paced ones included, and writes the next only once the socket's buffer
has drained below its high-water mark (StreamWriter.drain); and the SMTP watch, which
keeps a record per command until its reply, is read no further while MAX_UNANSWERED
commands wait. A client that never reads its replies thus stalls the server's replies,
then the server, then the proxy's reading from the client: its own sends block.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from maildrill.journal import CsvJournal
from maildrill.records import FaultRecord, ProxyRecord
from sinks.config import SinkConfig
from sinks.effects import (
    PROXY_EFFECTS,
    Action,
    Context,
    Decision,
    Delay,
    Direction,
    Pace,
    SessionInfo,
    Stage,
)
from sinks.host import ActiveEffect, EffectHost
from sinks.replies import Reply
from sinks.smtp_watch import Command, Message, SmtpWatch

READ_SIZE = 64 * 1024
# Per direction: at most this many chunks read ahead of the writer, each of one read (at
# most READ_SIZE, plus an unfinished command line of up to MAX_LINE).
QUEUE_CHUNKS = 16
PACE_SLICE_S = 0.05  # a paced chunk goes out in slices this long, not in one burst
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass
class ProxyCounters:
    sessions: int = 0
    active_sessions: int = 0
    accepted: int = 0  # messages whose final dot got a 2xx (passed on to the client)
    dropped: int = 0  # messages cut by drop: the server has them, the client never heard
    deferred: int = 0  # 4xx to the final dot
    rejected: int = 0  # 5xx to the final dot
    bytes: int = 0  # of accepted messages
    bytes_up: int = 0  # client to server, all sessions
    bytes_down: int = 0  # server to client
    cut: int = 0  # sessions ended by a fault (down, reset, drop)
    upstream_errors: int = 0  # connections to the upstream that failed


class Proxy(EffectHost):
    """Listener, relays, effects and journals of one proxy (one process)."""

    kinds = PROXY_EFFECTS

    def __init__(self, config: SinkConfig, journal_dir: Path, *, seed: int = 0) -> None:
        assert config.mode == "proxy"
        assert config.upstream is not None
        self.config = config
        self.upstream = config.upstream
        self.journal_dir = journal_dir
        own_seed = config.seed if config.seed is not None else seed
        rng = random.Random(f"{own_seed}:{config.name}:0")
        faults = CsvJournal(journal_dir / f"faults-{config.name}.csv", FaultRecord)
        super().__init__(config.name, 0, rng, faults)
        self.journal = CsvJournal(journal_dir / f"proxy-{config.name}.csv", ProxyRecord)
        self.counters = ProxyCounters()
        self.relays: set[Relay] = set()
        self.transports: set[asyncio.Transport] = set()  # both sides, until closed
        self.stopping = False
        self.port = config.port
        self.started_at = 0.0
        self._held_closed = 0  # listener faults in force, as in Sink
        self._session_ids = itertools.count(1)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, start_at: float | None = None) -> None:
        await self.open_listener()
        self.started_at = time.time()
        zero = start_at if start_at is not None else self.started_at
        await self.start_effects(self.config.behaviours, self.config.faults, zero)

    async def stop(self) -> None:
        self.stopping = True
        await self.stop_effects()
        if self.server is not None:
            self.server.close()
            self.server = None
        await self._cut_all("stop")
        # Connections accepted but not relayed yet, and sockets still closing: the loop
        # may stop after this returns, and a socket left to it would stay open.
        for transport in list(self.transports):
            transport.abort()
        async with asyncio.timeout(5):
            while self.transports:
                await asyncio.sleep(0)
        self._faults.close()
        self.journal.close()

    async def _cut_all(self, cause: str) -> None:
        relays = list(self.relays)
        for relay in relays:
            relay.cut(cause)
        current = asyncio.current_task()
        tasks = [r.task for r in relays if r.task is not None and r.task is not current]
        if tasks:
            await asyncio.wait(tasks)

    # -- the listener (FaultHost) -----------------------------------------------------

    async def open_listener(self) -> None:
        """Listen, unless another listener fault still holds it closed (as Sink does)."""
        self._held_closed = max(0, self._held_closed - 1)
        if self._held_closed or self.server is not None:
            return
        host = self.config.host
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _Tracked(self, self._serve),
            host=host,
            port=self.port,
            reuse_address=True,
            backlog=1024,
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def close_listener(self) -> None:
        """Refuse new connections at once and cut the relayed ones (both sides)."""
        self._held_closed += 1
        if self.server is not None:
            self.server.close()
            self.server = None
        for relay in list(self.relays):
            relay.cut("down", fault=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping:
            writer.transport.abort()
            return
        relay = Relay(self, reader, writer)
        self.relays.add(relay)
        self.counters.sessions += 1
        self.counters.active_sessions += 1
        try:
            await relay.run()
        finally:
            self.relays.discard(relay)
            self.counters.active_sessions -= 1

    # -- what relays ask ----------------------------------------------------------------

    def next_session_id(self) -> str:
        return f"{self.name}.{next(self._session_ids)}"

    def log(self, relay: Relay, event: str, **values: Any) -> None:
        self.journal.write(
            ProxyRecord(time=time.time(), proxy=self.name, session=relay.info.id,
                        peer=relay.info.peer_ip, event=event, **values)
        )  # fmt: skip

    def verdict(self, relay: Relay, message: Message, code: int | None) -> None:
        """A message's end went by: count it and journal what became of it."""
        c = self.counters
        if message.cut == "drop":
            c.dropped += 1
        elif code is not None and 200 <= code < 300:
            c.accepted += 1
            c.bytes += message.size
        elif code is not None and 400 <= code < 500:
            c.deferred += 1
        elif code is not None and code >= 500:
            c.rejected += 1
        self.log(relay, "message", msg_id=message.msg_id, code=code,
                 size=message.size, cause=message.cut)  # fmt: skip

    # -- reporting --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "worker": 0,
            "mode": "proxy",
            "host": self.config.host,
            "port": self.port,
            "upstream": f"{self.upstream.host}:{self.upstream.port}",
            "listening": self.server is not None,
            "counters": asdict(self.counters),
            "active": [a.describe() for a in self.effects.values()],
        }


class _Tracked(asyncio.StreamReaderProtocol):
    """The protocol of asyncio's start_server and open_connection, with the proxy told of
    each transport from connection_made to connection_lost, so that stopping can close
    every one (asyncio's Server forgets accepted connections once it stops listening)."""

    def __init__(self, proxy: Proxy, connected: Any = None) -> None:
        self.reader = asyncio.StreamReader(limit=READ_SIZE)
        super().__init__(self.reader, connected)
        self._proxy = proxy
        self._tracked: asyncio.BaseTransport | None = None
        self.eof = False  # the peer closed its side or the connection was lost: no more comes
        self.on_eof: Callable[[], None] | None = None  # told when it happens

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracked = transport
        self._proxy.transports.add(cast(asyncio.Transport, transport))  # a stream socket
        super().connection_made(transport)

    def eof_received(self) -> bool:
        self._eof()
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._proxy.transports.discard(self._tracked)
        self._eof()
        super().connection_lost(exc)

    def _eof(self) -> None:
        self.eof = True
        if self.on_eof is not None:
            self.on_eof()


class Link:
    """One direction of a relay: chunks in arrival order, held (latency), paced
    (bandwidth), written. A chunk is held from when it was read, so a stream of chunks
    is late by the latency once, as over a long wire."""

    def __init__(self, relay: Relay, direction: Direction, writer: asyncio.StreamWriter) -> None:
        self.relay = relay
        self.direction = direction
        self.writer = writer
        self.queue: asyncio.Queue[tuple[float, bytes, Callable[[], None] | None] | None] = (
            asyncio.Queue(QUEUE_CHUNKS)
        )
        self.task: asyncio.Task[None] | None = None
        self.free_at = 0.0  # when a paced link has sent what it was given

    async def put(self, data: bytes, then: Callable[[], None] | None = None) -> None:
        await self.queue.put((asyncio.get_running_loop().time(), data, then))

    async def close(self) -> None:
        """No more data: the writer closes its side once the queue is written."""
        if self.task is not None and not self.task.done():
            await self.queue.put(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        writer = self.writer
        try:
            while True:
                item = await self.queue.get()
                shaped = await self._thawed(len(item[1]) if item is not None else 0)
                if shaped is None:
                    return  # held for a client that left: dropped, the relay cut
                if item is None:
                    break
                arrived, data, then = item
                hold, pace = shaped
                wait = arrived + hold - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if pace > 0:
                    await self._paced(data, pace)
                else:
                    writer.write(data)
                await writer.drain()
                if then is not None:
                    then()
        except OSError:
            self.relay.cut("error")
            return
        writer.close()

    async def _thawed(self, size: int) -> tuple[float, float] | None:
        """(hold, pace) for the next chunk (or the end: `size` 0), once no freeze holds
        this direction; None when one held it and the client left meanwhile.

        The end of the stream waits too, so the other side sees nothing, not even the
        close, until the path comes back. What a freeze held for a client that has left
        is not delivered late: the relay is cut (the upstream never gets a final dot that
        came before the sender gave up, which would be a receipt it never heard of).
        """
        relay = self.relay
        held_by = ""
        while (shaped := relay.shaping(self.direction, size)) is None:
            held_by = relay.info.held_by
            await relay.proxy.changed()
        if held_by and relay.client_proto.eof:
            relay.cut(held_by)
            return None
        return shaped

    async def _paced(self, data: bytes, seconds: float) -> None:
        """Out in slices of about PACE_SLICE_S, each when the link would have carried it."""
        loop = asyncio.get_running_loop()
        step = max(1, math.ceil(len(data) * PACE_SLICE_S / seconds))
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            now = loop.time()
            self.free_at = max(self.free_at, now) + seconds * len(piece) / len(data)
            await asyncio.sleep(self.free_at - now)
            self.writer.write(piece)


class _ServerGone(Exception):
    """The server closed while the client waited for its replies: the client side ends."""


def _stage(event: Command | Message | None) -> Stage | None:
    return Stage.DOT if isinstance(event, Message) else event.stage if event else None


class Relay:
    """One client connection and its upstream connection, with the SMTP session between."""

    def __init__(
        self, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_r = reader
        self.client_w = writer
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None
        self.up: Link  # set when relaying starts: client to server ...
        self.down: Link  # ... and server to client
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) else str(peer)
        self.info = SessionInfo(id=proxy.next_session_id(), peer_ip=peer_ip)
        self.watch = SmtpWatch()
        # Set when replies come, the server is gone or the client has left: what a client
        # side waiting for replies (`_answered`) waits for.
        self.wake = asyncio.Event()
        self.server_gone = False
        client = writer.transport.get_protocol()
        assert isinstance(client, _Tracked)
        self.client_proto = client
        client.on_eof = self.wake.set
        self.bytes_up = 0
        self.bytes_down = 0
        self.cause = ""  # what ended the session: the first to say wins
        self.detail = ""
        self.client_gone = False  # cut by drop: nothing more goes to the client
        self.was_cut = False  # by a fault (counted once)
        self.deadline: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[Any] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.draws: dict[tuple[str, float], bool] = {}  # link effects: drawn once per session

    # -- the session ------------------------------------------------------------------

    async def run(self) -> None:
        self.task = asyncio.current_task()
        proxy = self.proxy
        proxy.log(self, "open")
        try:
            decided = await self._decide_connect()
            if decided is not None:
                await self._refuse(*decided)
                return
            if self.cause:  # the client left (or a fault cut it) while a freeze held it
                return
            if await self._connect():
                await self._relay()
        finally:
            if self.deadline is not None:
                self.deadline.cancel()
            self._close_both()
            for pending in self.watch.pending:
                if isinstance(pending, Message):  # its end went by, no verdict came back
                    pending.cut = pending.cut or self.cause
                    proxy.verdict(self, pending, None)
            if self.watch.opaque and not self.detail:
                self.detail = "starttls"
            proxy.counters.bytes_up += self.bytes_up
            proxy.counters.bytes_down += self.bytes_down
            proxy.log(self, "close", bytes_up=self.bytes_up, bytes_down=self.bytes_down,
                      cause=self.cause, detail=self.detail)  # fmt: skip

    async def _decide_connect(self) -> tuple[str, Decision] | None:
        """The connect stage's decision. A freeze holds it (in the host) until it clears,
        and the upstream is not reached meanwhile; a client that leaves first ends the
        wait, the session then ended by the kind that held it."""
        proxy = self.proxy
        if not proxy.by_stage[Stage.CONNECT]:
            return None
        decide = asyncio.ensure_future(proxy.decide_kind(Stage.CONNECT, self.context()))
        left = asyncio.ensure_future(self.wake.wait())  # set at the client's EOF
        try:
            await asyncio.wait((decide, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
            if not decide.done():
                held_by = self.info.held_by
                decide.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await decide
                self.ended(held_by or "client")
        return decide.result() if not decide.cancelled() else None

    async def _refuse(self, kind: str, decision: Decision) -> None:
        """A fault at the connection: the upstream is never reached."""
        self.ended(kind)
        if decision is Action.RESET:
            self.reset(kind)
        elif decision is Action.HANG:
            with contextlib.suppress(OSError):  # nothing said; read until the client gives up
                while data := await self.client_r.read(READ_SIZE):
                    self.bytes_up += len(data)
        elif isinstance(decision, Reply):
            self.client_w.write(f"{decision}\r\n".encode())
            self.client_w.close()  # after the reply is out (421 closes: RFC 5321 3.8)

    async def _connect(self) -> bool:
        up = self.proxy.upstream
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Tracked(self.proxy), up.host, up.port),
                up.timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            self.proxy.counters.upstream_errors += 1
            self.ended("upstream-error")
            self.detail = type(exc).__name__
            return False
        self.up_r = protocol.reader
        writer = self.up_w = asyncio.StreamWriter(transport, protocol, protocol.reader, loop)
        if self.cause:  # cut while connecting
            writer.transport.abort()
            return False
        return True

    async def _relay(self) -> None:
        assert self.up_w is not None
        self.up = Link(self, Direction.UPSTREAM, self.up_w)
        self.down = Link(self, Direction.DOWNSTREAM, self.client_w)
        make = asyncio.create_task
        self.up.task = make(self.up.run())
        self.down.task = make(self.down.run())
        self.tasks = [self.up.task, self.down.task, make(self._from_client()),
                      make(self._from_server())]  # fmt: skip
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _from_client(self) -> None:
        go_on = True
        try:
            while go_on and (data := await self.client_r.read(READ_SIZE)):
                self.bytes_up += len(data)
                go_on = await self._client_data(data)
        except (OSError, _ServerGone):
            pass
        if go_on:
            self.ended("client")
            await self.up.close()

    async def _client_data(self, data: bytes) -> bool:
        """One read on to the server: in one chunk, but for pieces whose event a fault may
        act on (those go alone, after what came before); and no further than the watch
        may follow before replies (`ready`). False: a fault ended the session."""
        held: list[bytes] = []
        for piece, event in self.watch.pieces(data):
            if self._acts(event):
                await self._put_up(held)
                if not await self._client_piece(piece, event):
                    return False
            else:
                held.append(piece)
            if not self.watch.ready:
                await self._put_up(held)  # what the server must answer first
                await self._answered()
        await self._put_up(held)
        return True

    async def _put_up(self, held: list[bytes]) -> None:
        if held:
            data = b"".join(held)
            held.clear()
            await self.up.put(data)

    async def _answered(self) -> None:
        """Until the watch may read on: the server has answered enough. A client that has
        left is not waited for: what it sent before it left goes on (no more can come),
        and its end is read as it would be without the wait."""
        while not self.watch.ready and not self.client_proto.eof:
            if self.server_gone:
                raise _ServerGone
            self.wake.clear()
            await self.wake.wait()

    def _acts(self, event: Command | Message | None) -> bool:
        """Whether a fault is in force at this event's stage (it decides on the piece)."""
        stage = _stage(event)
        return stage is not None and bool(self.proxy.by_stage[stage])

    async def _client_piece(self, piece: bytes, event: Command | Message | None) -> bool:
        """Pass one piece on, unless a fault at its event says otherwise; False: stop reading."""
        proxy = self.proxy
        stage = _stage(event)
        decided = None
        if stage is not None and proxy.by_stage[stage]:
            decided = await proxy.decide_kind(stage, self.context())
        if decided is not None:
            kind, decision = decided
            if decision is Action.RESET:
                if isinstance(event, Message):
                    event.cut = kind
                self.reset(kind)
                return False
            if decision is Action.DROP and isinstance(event, Message):
                event.cut = kind
                # The dot goes through; once written, the client is cut. The upstream stays
                # until its reply to the dot comes back (journaled), then it is closed too.
                await self.up.put(piece, then=lambda: self._drop_client(kind))
                return False
        await self.up.put(piece)
        return True

    async def _from_server(self) -> None:
        assert self.up_r is not None
        try:
            while data := await self.up_r.read(READ_SIZE):
                self.bytes_down += len(data)
                if not await self._server_data(data):
                    return
        except OSError:
            pass
        self.server_gone = True
        self.wake.set()
        self.ended("server")
        await self.down.close()

    async def _server_data(self, data: bytes) -> bool:
        """One read on to the client, in one chunk, each message's verdict journaled on the
        way; False: a fault ended the session at a verdict."""
        held: list[bytes] = []
        for piece, reply in self.watch.server(data):
            message = reply.answers if reply is not None else None
            if isinstance(message, Message):
                assert reply is not None
                self.proxy.verdict(self, message, reply.code)
                if message.cut:
                    self.cut(message.cut)
                    return False
            held.append(piece)
        self.wake.set()  # before waiting on the client: its reading may go on now
        if held and not self.client_gone:
            await self.down.put(b"".join(held))
        return True

    # -- faults and endings -----------------------------------------------------------

    def context(self) -> Context:
        proxy = self.proxy
        self.info.messages = self.watch.messages
        return Context(
            session=self.info,
            active_sessions=proxy.counters.active_sessions,
            now=time.monotonic(),
            rng=proxy.rng,
        )

    def shaping(self, direction: Direction, size: int) -> tuple[float, float] | None:
        """(hold, pace) seconds for a chunk: the link effects' Delays and Paces, summed;
        None while one freezes the link (`info.held_by` says which). Each effect's
        probability is drawn once per session, as Toxiproxy draws toxicity per
        connection: a session is on a slow link or not."""
        hold = pace = 0.0
        proxy = self.proxy
        self.info.held_by = ""
        for active in proxy.by_direction[direction]:
            if not self._drawn(active):
                continue
            shaped = active.effect.shape(direction, size, proxy.rng)
            if isinstance(shaped, Delay):
                hold += shaped.seconds
            elif isinstance(shaped, Pace):
                pace += shaped.seconds
            elif shaped is Action.FREEZE:
                self.info.held_by = active.kind
                return None
        return hold, pace

    def _drawn(self, active: ActiveEffect) -> bool:
        key = (active.id, active.started)
        drawn = self.draws.get(key)
        if drawn is None:
            drawn = self.draws[key] = self.proxy.applies(active)
        return drawn

    def ended(self, cause: str) -> None:
        if not self.cause:
            self.cause = cause

    def _counted_cut(self) -> None:
        if not self.was_cut:
            self.was_cut = True
            self.proxy.counters.cut += 1

    def _drop_client(self, kind: str) -> None:
        self.ended(kind)
        self._counted_cut()
        self.client_gone = True
        self.client_w.close()
        # The server's reply to the dot ends it; a server that never replies, the idle time.
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.proxy.config.idle_timeout_s, self.cut, kind)

    def reset(self, kind: str) -> None:
        """RST to the client: SO_LINGER 0, then close (the upstream side just closes)."""
        sock = self.client_w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.cut(kind, fault=True)

    def cut(self, cause: str, *, fault: bool = False) -> None:
        """End the session now, both sides; the tasks relaying it are cancelled."""
        if fault:
            self._counted_cut()
        self.ended(cause)
        self._close_both(force=True)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()

    def _close_both(self, force: bool = False) -> None:
        """Abort both sides; with `force` false, one already closing (flushing) is left be."""
        for writer in (self.client_w, self.up_w):
            if writer is not None and (force or not writer.transport.is_closing()):
                writer.transport.abort()
