"""One named sink: its listener, its active effects, its counters and its journals."""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import random
import socket
import ssl
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from maildrill.records import ReceiptRecord, RefusalRecord
from sinks import log_limit
from sinks.authcheck import AuthVerdicts
from sinks.authcheck.checker import MessageChecker
from sinks.backup_mx import RelayQueue
from sinks.config import SinkConfig
from sinks.effects import Context, Stage
from sinks.handler import SinkHandler
from sinks.host import ActiveEffect, EffectHost
from sinks.journal import SinkJournals
from sinks.protocol import SinkSMTP
from sinks.tls import self_signed_context, server_context

__all__ = ["ActiveEffect", "Counters", "Sink"]  # ActiveEffect lives in sinks.host

# A refusal at these stages answers the message sent in DATA (SinkSMTP.data_rcpts).
_AFTER_DATA = frozenset({Stage.DOT, Stage.ACK})


@dataclass
class Counters:
    sessions: int = 0
    active_sessions: int = 0
    accepted: int = 0
    dropped: int = 0
    deferred: int = 0
    rejected: int = 0
    bytes: int = 0


def _auth_columns(auth: AuthVerdicts) -> dict[str, str]:
    return {
        "spf": auth.spf.value,
        "dkim": auth.dkim.value,
        "dkim_domain": auth.dkim_domain,
        "dmarc": auth.dmarc.value,
        "dmarc_policy": auth.dmarc_policy,
        "ptr": auth.ptr.value,
        "auth_detail": auth.detail,
    }


class Sink(EffectHost):
    """Listener, effect pipeline and bookkeeping of one sink in one process."""

    def __init__(
        self,
        config: SinkConfig,
        journal_dir: Path,
        *,
        seed: int = 0,
        worker: int = 0,
        reuse_port: bool = False,
    ) -> None:
        log_limit.install()  # a hostile client must not grow the log without bound
        self.config = config
        self.journal_dir = journal_dir
        self.journals = SinkJournals(journal_dir, config.name, worker)
        sink_seed = config.seed if config.seed is not None else seed
        rng = random.Random(f"{sink_seed}:{config.name}:{worker}")
        super().__init__(config.name, worker, rng, self.journals.faults)
        self.counters = Counters()
        self.protocols: set[SinkSMTP] = set()
        self.peers: collections.Counter[str] = collections.Counter()  # open sessions per IP
        self._held_closed = 0  # listener faults in force (close_listener calls not undone)
        self.port = config.port
        self.reuse_port = reuse_port
        self.handler = SinkHandler(self)
        self.relay: RelayQueue | None = None  # backup-mx mode: the queue to the upstream
        self.checker: MessageChecker | None = None  # `verify:`: the provider's checks
        self._session_ids = itertools.count(1)
        self._tls: ssl.SSLContext | None = None
        self._credentials: dict[str, str] | None = None
        self._smtp_kwargs: dict[str, Any] = {}
        self._template: SinkSMTP | None = None
        self.started_at = 0.0

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, start_at: float | None = None) -> None:
        cfg = self.config
        tls = cfg.tls
        if tls is not None:
            if tls.cert is None or tls.key is None:
                self._tls = self_signed_context(cfg.banner_name, self.journal_dir / "tls")
            else:
                self._tls = server_context(tls.cert, tls.key)
        auth = cfg.auth
        # Read once: environment variables and files named by the config, not the config.
        self._credentials = auth.table() if auth is not None else None
        self._smtp_kwargs = dict(
            hostname=cfg.banner_name,
            ident="ESMTP maildrill",
            data_size_limit=cfg.size_limit or None,
            enable_SMTPUTF8=cfg.smtputf8,
            decode_data=False,
            tls_context=self._tls,
            timeout=cfg.idle_timeout_s,
            auth_required=bool(auth and auth.required),
            auth_require_tls=bool(auth.require_tls) if auth else True,
            auth_exclude_mechanism=[
                m for m in ("PLAIN", "LOGIN") if auth is None or m not in auth.mechanisms
            ],
            authenticator=self._authenticate,
            loop=asyncio.get_running_loop(),
        )
        # SMTP.__init__'s introspection, done once; each connection copies it (SinkSMTP).
        self._template = SinkSMTP(self, self.handler, **self._smtp_kwargs)
        if cfg.verify is not None:
            self.checker = MessageChecker(cfg.verify)
        if cfg.mode == "backup-mx":
            self.relay = RelayQueue(cfg, self.journal_dir, self.worker)
            await self.relay.start()  # resumes a queue left by an earlier run of this sink
        await self.open_listener()
        self.started_at = time.time()
        zero = start_at if start_at is not None else self.started_at
        await self.start_effects(cfg.behaviours, cfg.faults, zero)

    async def stop(self) -> None:
        await self.stop_effects()
        if self.server is not None:
            self.server.close()
            self.server = None
        for proto in list(self.protocols):
            if proto.transport is not None:
                cast(asyncio.Transport, proto.transport).abort()
        if self.relay is not None:
            await self.relay.stop()
        if self.checker is not None:
            self.checker.close()
        self.journals.close()

    # -- the listener (FaultHost) -----------------------------------------------------

    async def open_listener(self) -> None:
        """Listen, unless another listener fault still holds it closed (see below)."""
        self._held_closed = max(0, self._held_closed - 1)
        if self._held_closed or self.server is not None:
            return
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self._make_protocol,
            host=self.config.host,
            port=self.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=1024,
            family=socket.AF_INET6 if ":" in self.config.host else socket.AF_INET,
        )
        sock = self.server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close_listener(self) -> None:
        """Refuse new connections at once and cut the open ones.

        Listener faults overlap (a flap during a down, two downs): each close holds the
        listener closed until its own open_listener, so the last fault to clear reopens.
        """
        self._held_closed += 1
        if self.server is not None:
            self.server.close()
            self.server = None
        for proto in list(self.protocols):
            if proto.transport is not None:
                cast(asyncio.Transport, proto.transport).abort()

    def _make_protocol(self) -> SinkSMTP:
        return SinkSMTP(self, self.handler, like=self._template)

    # -- effects ----------------------------------------------------------------------

    def context(self, server: SinkSMTP, address: str = "") -> Context:
        assert server.info is not None
        envelope = server.envelope
        return Context(
            session=server.info,
            active_sessions=self.counters.active_sessions,
            now=time.monotonic(),
            rng=self.rng,
            mail_from=(envelope.mail_from or "") if envelope else "",
            recipients=envelope.rcpt_tos if envelope else [],
            address=address,
        )

    # -- bookkeeping called by the protocol and handler --------------------------------

    def next_session_id(self) -> str:
        n = next(self._session_ids)
        return f"{self.name}.{n}" if self.worker == 0 else f"{self.name}.w{self.worker}.{n}"

    def session_opened(self, proto: SinkSMTP) -> None:
        self.protocols.add(proto)
        self.counters.sessions += 1
        self.counters.active_sessions += 1
        assert proto.info is not None
        self.peers[proto.info.peer_ip] += 1

    def session_closed(self, proto: SinkSMTP) -> None:
        self.protocols.discard(proto)
        self.counters.active_sessions -= 1
        assert proto.info is not None
        peer = proto.info.peer_ip
        self.peers[peer] -= 1
        if not self.peers[peer]:
            del self.peers[peer]

    def received(
        self,
        server: SinkSMTP,
        envelope: Envelope,
        msg_id: str,
        message_id: str,
        outcome: str,
        auth: AuthVerdicts | None = None,
    ) -> str:
        """Journal a received message (before any reply goes out); returns its queue id.

        A backup MX queues it first: QueueWriteError (then no receipt) if it could not."""
        info = server.info
        assert info is not None
        info.messages += 1
        queue_id = f"{info.id}.{info.messages}"
        content = envelope.content
        size = len(content) if content is not None else 0
        if outcome == "queued":
            assert self.relay is not None
            assert isinstance(content, bytes)
            queue_id = self.relay.queue_id(info.id, info.messages)
            self.relay.enqueue(
                queue_id, msg_id, envelope.mail_from or "", list(envelope.rcpt_tos), content,
                info.peer_ip,
            )  # fmt: skip
        self.journals.receipts.write(
            ReceiptRecord(
                time=time.time(),
                sink=self.name,
                worker=self.worker,
                session=info.id,
                peer=info.peer_ip,
                msg_id=msg_id,
                message_id=message_id,
                mail_from=envelope.mail_from or "",
                rcpt_count=len(envelope.rcpt_tos),
                size=size,
                outcome=outcome,
                queue_id=queue_id,
                helo=info.helo,
                rcpts=" ".join(envelope.rcpt_tos),
                **(_auth_columns(auth) if auth is not None else {}),
            )
        )
        counters = self.counters
        if outcome != "dropped":
            counters.accepted += 1
            counters.bytes += size
        else:
            counters.dropped += 1
        return queue_id

    def refused(self, server: SinkSMTP, reply: str) -> None:
        code, _, rest = reply.partition(" ")
        enhanced = rest.split(" ", 1)[0] if rest[:1] in ("4", "5") and "." in rest[:8] else ""
        if code.startswith("4"):
            self.counters.deferred += 1
        else:
            self.counters.rejected += 1
        info = server.info
        envelope = server.envelope
        # The verdicts the handler refused the message in DATA for (enforce:), once.
        refused_for, server.refused_for = server.refused_for, None
        self.journals.refusals.write(
            RefusalRecord(
                time=time.time(),
                sink=self.name,
                worker=self.worker,
                session=info.id if info else "",
                peer=info.peer_ip if info else "",
                stage=server.stage.value,
                code=code,
                enhanced=enhanced,
                mail_from=(envelope.mail_from or "") if envelope else "",
                rcpt_count=server.data_rcpts
                if server.stage in _AFTER_DATA
                else (len(envelope.rcpt_tos) if envelope else 0),
                msg_id=server.msg_id,
                helo=info.helo if info else "",
                **(_auth_columns(refused_for) if refused_for is not None else {}),
            )
        )

    def _authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self._credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        expected = self._credentials.get(user)
        ok = expected is not None and hmac.compare_digest(expected.encode(), auth_data.password)
        return AuthResult(success=ok, handled=False)

    # -- reporting --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "worker": self.worker,
            "host": self.config.host,
            "port": self.port,
            "listening": self.server is not None,
            "counters": asdict(self.counters),
            "active": [a.describe() for a in self.effects.values()],
            **({"relay": self.relay.status()} if self.relay is not None else {}),
        }
