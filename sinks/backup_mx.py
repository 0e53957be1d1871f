"""Backup MX: what the sink accepts goes into a durable queue and on to the upstream.

A real secondary often does not deliver by itself: it holds mail for the primary and hands
it over once the primary answers again. The queue is SQLite in WAL mode, written before the
250 goes out, so a killed or restarted backup loses nothing it accepted. Every step is
journaled in `relay-NAME.csv`: queued, deferred (a failed forward, with its reply),
forwarded, bounced (5xx from upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from email.utils import formatdate
from pathlib import Path

import aiosmtplib

from sinks.config import SinkConfig, UpstreamConfig
from sinks.journal import CsvJournal, stamp
from sinks.replies import Reply

RELAY_FIELDS = (
    "time", "sink", "worker", "msg_id", "queue_id", "event", "upstream", "attempt", "code",
    "enhanced", "error", "queued_at",
)  # fmt: skip
IDLE_POLL_S = 0.5


class RelayQueue:
    """The backup's queue and its forwarder (one per sink process)."""

    def __init__(self, config: SinkConfig, journal_dir: Path, worker: int) -> None:
        assert config.upstream is not None
        self.config = config
        self.upstream: UpstreamConfig = config.upstream
        self.worker = worker
        suffix = config.name if worker == 0 else f"{config.name}-w{worker}"
        self.path = journal_dir / f"queue-{suffix}.sqlite"
        self.journal = CsvJournal(journal_dir / f"relay-{suffix}.csv", RELAY_FIELDS)
        # Autocommit: each statement is durable on its own. Readers in other threads
        # (tests, a status call) only count rows.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS queue (queue_id TEXT PRIMARY KEY, msg_id TEXT, "
            "mail_from TEXT, rcpts TEXT, data BLOB, queued_at REAL, attempts INTEGER, "
            "next_try REAL)"
        )
        self.wake = asyncio.Event()
        self.in_flight: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.workers: set[asyncio.Task[None]] = set()  # forwards in progress
        self.stopping = False
        self.forwarded = 0
        self.bounced = 0
        self.target = f"{self.upstream.host}:{self.upstream.port}"

    # -- the accepting side ---------------------------------------------------------------

    def enqueue(
        self, queue_id: str, msg_id: str, mail_from: str, rcpts: list[str], data: bytes,
        peer: str,
    ) -> None:  # fmt: skip
        """Store the message durably; called before the 250 is sent."""
        now = time.time()
        received = (
            f"Received: from {peer} by {self.config.banner_name} (maildrill backup-mx) "
            f"id {queue_id}; {formatdate(now)}\r\n"
        ).encode()
        self.db.execute(
            "INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (queue_id, msg_id, mail_from, json.dumps(rcpts), received + data, now, now),
        )
        self._log(msg_id, queue_id, "queued", 0, now)
        self.wake.set()

    def depth(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def status(self) -> dict[str, int | str]:
        return {
            "upstream": self.target,
            "depth": self.depth(),
            "in_flight": len(self.in_flight),
            "forwarded": self.forwarded,
            "bounced": self.bounced,
        }

    # -- the forwarding side --------------------------------------------------------------

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # Python 3.11's wait_for can swallow a cancel that meets a wake-up (gh-86296): the
        # loop also ends on this flag. Forwards cut short leave their messages queued.
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for task in list(self.workers):
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.db.close()
        self.journal.close()

    async def _run(self) -> None:
        limit = self.config.forward_concurrency
        while not self.stopping:
            self.wake.clear()
            free = limit - len(self.in_flight)
            now = time.time()
            rows = []
            if free > 0:
                rows = self.db.execute(
                    "SELECT queue_id, msg_id, mail_from, rcpts, data, queued_at, attempts "
                    "FROM queue WHERE next_try <= ? ORDER BY next_try LIMIT ?",
                    (now, free + len(self.in_flight)),
                ).fetchall()
            for row in rows:
                if (
                    row[0] in self.in_flight
                    or len(self.in_flight) >= self.config.forward_concurrency
                ):
                    continue
                self.in_flight.add(row[0])
                task = asyncio.create_task(self._forward(*row))
                self.workers.add(task)
                task.add_done_callback(self.workers.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self._idle(now))

    def _idle(self, now: float) -> float:
        """Sleep until the next retry is due (or something new is queued)."""
        due = self.db.execute("SELECT MIN(next_try) FROM queue").fetchone()[0]
        if due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.01, float(due) - now))

    async def _forward(
        self, queue_id: str, msg_id: str, mail_from: str, rcpts: str, data: bytes,
        queued_at: float, attempts: int,
    ) -> None:  # fmt: skip
        attempt = attempts + 1
        up = self.upstream
        try:
            await aiosmtplib.send(
                data,
                sender=mail_from,
                recipients=json.loads(rcpts),
                hostname=up.host,
                port=up.port,
                timeout=up.timeout_s,
                start_tls=up.starttls,
                validate_certs=False,
                local_hostname=self.config.banner_name,
            )
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            # Every recipient refused: the first refusal speaks for the message.
            first = exc.recipients[0] if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else exc
            reply = Reply(first.code, *_split(first.message))
            if 500 <= reply.code < 600:
                self._done(queue_id, msg_id, "bounced", attempt, queued_at, reply)
            else:
                self._defer(queue_id, msg_id, attempt, queued_at, reply, type(exc).__name__)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._defer(queue_id, msg_id, attempt, queued_at, None, type(exc).__name__)
        else:
            self._done(queue_id, msg_id, "forwarded", attempt, queued_at, Reply(250, "", ""))
        finally:
            self.in_flight.discard(queue_id)
            self.wake.set()

    def _done(
        self, queue_id: str, msg_id: str, event: str, attempt: int, queued_at: float,
        reply: Reply,
    ) -> None:  # fmt: skip
        # Journal first: a crash between the two re-sends the message (at least once),
        # which the analysis then sees as the real duplicate it would be.
        self._log(msg_id, queue_id, event, attempt, queued_at, reply)
        self.db.execute("DELETE FROM queue WHERE queue_id = ?", (queue_id,))
        if event == "forwarded":
            self.forwarded += 1
        else:
            self.bounced += 1

    def _defer(
        self, queue_id: str, msg_id: str, attempt: int, queued_at: float, reply: Reply | None,
        error: str,
    ) -> None:  # fmt: skip
        cfg = self.config
        wait = min(cfg.forward_max_backoff_s, cfg.forward_backoff_s * 2 ** (attempt - 1))
        self.db.execute(
            "UPDATE queue SET attempts = ?, next_try = ? WHERE queue_id = ?",
            (attempt, time.time() + wait, queue_id),
        )
        self._log(msg_id, queue_id, "deferred", attempt, queued_at, reply, error)

    def _log(
        self, msg_id: str, queue_id: str, event: str, attempt: int, queued_at: float,
        reply: Reply | None = None, error: str = "",
    ) -> None:  # fmt: skip
        self.journal.write(
            (stamp(), self.config.name, self.worker, msg_id, queue_id, event, self.target,
             attempt, reply.code if reply and reply.code else "", reply.enhanced if reply else "",
             error, f"{queued_at:.6f}")
        )  # fmt: skip


def _split(message: str) -> tuple[str, str]:
    """(enhanced code, text) of a reply's text."""
    first, _, rest = message.partition(" ")
    if first[:1] in "245" and first.count(".") == 2:
        return first, rest
    return "", message
