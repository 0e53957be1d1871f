"""Backup MX: what the sink accepts goes into a durable queue and on to the upstream.

A real secondary often does not deliver by itself: it holds mail for the primary and hands
it over once the primary answers again. Every step is journaled in `relay-NAME.csv`:
queued, deferred (a failed forward, with its reply), forwarded, bounced (5xx from upstream).

What a 250 promises (`durability`, default `full`):

- The queue is SQLite in WAL mode, `queue-NAME.sqlite` (`-wK` for worker K). A message is
  committed to it before the 250 goes out, by a plain INSERT under a queue id no other
  message of this queue ever had (`SESSION.N.rRUN`, RUN counting the queue's starts): a
  row is never overwritten, and a write that fails for any reason is a `451 4.3.0`, so the
  client keeps the message. A row leaves the queue only after its upstream's 250 (or 5xx),
  so a restart, however the process ended, forwards everything it acknowledged; a forward
  cut by a kill after the upstream's 250 goes again (at least once, as any MTA).
- `full`: `synchronous=FULL`, the WAL is fsynced at each message's commit: the message
  survives a power loss too (retry times and deletions go without an fsync of their own,
  see `_unsynced`). `process`: `synchronous=NORMAL`, written to the OS only: it survives
  kill -9 but the last messages may be lost with the machine (see
  benchmarks/backup_mx_accept.py for what the fsync costs).
- The CSV journals are flushed, not fsynced, in both: they are the analysis's evidence,
  not the mail. With `full` the queue row is on disk before any journal row is written,
  so a power loss can cost a journal row of a message the queue still holds (the
  analysis then counts a held message as lost, never a lost one as held or delivered),
  not the message. With `process` neither is fsynced: after a power loss a journal row
  may outlive its queue row, and a lost message read as held.
- One process owns a queue (SQLite's exclusive lock, held until it stops, released by the
  kernel if it dies): a second one would forward every message twice, so it is refused at
  start. A sink restarted with fewer `processes` takes over the queues of the workers it no
  longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import re
import sqlite3
import time
from email.utils import formatdate
from pathlib import Path
from typing import Literal

import aiosmtplib

from maildrill.journal import CsvJournal
from maildrill.records import RelayRecord
from sinks.config import SinkConfig, UpstreamConfig
from sinks.replies import Reply

IDLE_POLL_S = 0.5
SYNCHRONOUS = {"full": "FULL", "process": "NORMAL"}  # durability -> SQLite's setting
COLUMNS = (
    "queue_id TEXT PRIMARY KEY, msg_id TEXT, mail_from TEXT, rcpts TEXT, data BLOB, "
    "queued_at REAL, attempts INTEGER, next_try REAL"
)
log = logging.getLogger("mail.log")  # rate-limited (sinks.log_limit)


class QueueUnavailable(OSError):
    """The queue cannot be opened (held by another process, unreadable): the sink does not
    start, and says so in one line."""


class QueueWriteError(Exception):
    """A message could not be stored: the client gets a 451, never a 250."""


def open_queue(path: Path, durability: Literal["full", "process"]) -> sqlite3.Connection:
    """The queue at `path`, locked for this process alone (until it closes or dies)."""
    db = None
    try:
        # timeout=0: a queue held by a live process is refused at once, not after a wait.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        # Autocommit: each statement is durable on its own. Readers in other threads
        # (tests, a status call) share this connection: the lock is per process.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
        db.execute(f"CREATE TABLE IF NOT EXISTS queue ({COLUMNS})")  # takes the lock
        db.execute(
            "CREATE TABLE IF NOT EXISTS starts (run INTEGER PRIMARY KEY AUTOINCREMENT, "
            "started_at REAL, pid INTEGER)"
        )
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        why = "in use by another process" if "locked" in str(exc) else str(exc)
        raise QueueUnavailable(f"backup-mx queue {path}: {why}") from None
    if durability == "full":
        _sync_directory(path.parent)  # the queue file's name is on disk as well as its data
    return db


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RelayQueue:
    """The backup's queue and its forwarder (one per sink process)."""

    def __init__(self, config: SinkConfig, journal_dir: Path, worker: int) -> None:
        assert config.upstream is not None
        self.config = config
        self.upstream: UpstreamConfig = config.upstream
        self.worker = worker
        suffix = config.name if worker == 0 else f"{config.name}-w{worker}"
        self.path = journal_dir / f"queue-{suffix}.sqlite"
        self.journal = CsvJournal(journal_dir / f"relay-{suffix}.csv", RelayRecord)
        self.db = open_queue(self.path, config.durability)
        # This start's number, never reused in this file (AUTOINCREMENT), in every queue id.
        run = self.db.execute(
            "INSERT INTO starts (started_at, pid) VALUES (?, ?)", (time.time(), os.getpid())
        ).lastrowid
        assert run is not None
        self.run: int = run
        self.closed_depth: int | None = None  # the depth when stopped, for the final status
        if worker == 0:
            self._adopt_orphans(journal_dir)
        self.wake = asyncio.Event()
        self.in_flight: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.workers: set[asyncio.Task[None]] = set()  # forwards in progress
        self.stopping = False
        self.forwarded = 0
        self.bounced = 0
        self.target = f"{self.upstream.host}:{self.upstream.port}"

    # -- the accepting side ---------------------------------------------------------------

    def queue_id(self, session: str, number: int) -> str:
        """The id of a session's `number`th message, unique for the life of the queue file:
        session ids start again at 1 in each process, this start's `run` does not."""
        return f"{session}.{number}.r{self.run}"

    def enqueue(
        self, queue_id: str, msg_id: str, mail_from: str, rcpts: list[str], data: bytes,
        peer: str,
    ) -> None:  # fmt: skip
        """Store the message durably; called before the 250 is sent. Raises QueueWriteError
        when it is not stored (an id already queued, a full disk): then no 250."""
        now = time.time()
        received = (
            f"Received: from {peer} by {self.config.banner_name} (maildrill backup-mx) "
            f"id {queue_id}; {formatdate(now)}\r\n"
        ).encode()
        try:
            # A plain INSERT: a queued message is never replaced, whatever its id.
            self.db.execute(
                "INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                (queue_id, msg_id, mail_from, json.dumps(rcpts), received + data, now, now),
            )
        except sqlite3.Error as exc:
            log.warning("%s: message %s not queued (%s): 451 sent", self.config.name, msg_id, exc)
            raise QueueWriteError(str(exc)) from exc
        self._log(msg_id, queue_id, "queued", 0, now)
        self.wake.set()

    def depth(self) -> int:
        if self.closed_depth is not None:
            return self.closed_depth
        return int(self.db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def status(self) -> dict[str, int | str]:
        return {
            "upstream": self.target,
            "depth": self.depth(),
            "in_flight": len(self.in_flight),
            "forwarded": self.forwarded,
            "bounced": self.bounced,
        }

    def _adopt_orphans(self, journal_dir: Path) -> None:
        """Take over the queues of workers this sink no longer has (it ran with more
        `processes` before): nobody else would ever forward them.

        Copied, then deleted from the orphan: a crash in between leaves copies there that
        the next start skips (same queue id, same message). Rows are taken by the queue id
        prefix of that worker's sessions, so a queue of another sink whose name happens to
        end in `-wK` is left alone; a queue another live process holds is left to it.
        """
        name = self.config.name
        pattern = re.compile(rf"queue-{re.escape(name)}-w([0-9]+)\.sqlite")
        for path in sorted(journal_dir.glob(f"queue-{glob.escape(name)}-w*.sqlite")):
            match = pattern.fullmatch(path.name)
            if match is None or int(match[1]) < self.config.processes:
                continue
            prefix = f"{name}.w{int(match[1])}."
            try:
                orphan = open_queue(path, self.config.durability)
            except QueueUnavailable as exc:  # held by a live process, or unreadable
                log.warning("%s: not taken over: %s", self.config.name, exc)
                continue
            try:
                rows = orphan.execute(
                    "SELECT * FROM queue WHERE substr(queue_id, 1, ?) = ?", (len(prefix), prefix)
                ).fetchall()
                with self.db:  # one transaction
                    self.db.execute("BEGIN")
                    self.db.executemany(
                        "INSERT OR IGNORE INTO queue VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
                with orphan:
                    orphan.execute("BEGIN")
                    taken = [row[:1] for row in rows]
                    orphan.executemany("DELETE FROM queue WHERE queue_id = ?", taken)
            finally:
                orphan.close()

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
        self.closed_depth = self.depth()
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
        self._unsynced("DELETE FROM queue WHERE queue_id = ?", (queue_id,))
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
        self._unsynced(
            "UPDATE queue SET attempts = ?, next_try = ? WHERE queue_id = ?",
            (attempt, time.time() + wait, queue_id),
        )
        self._log(msg_id, queue_id, "deferred", attempt, queued_at, reply, error)

    def _unsynced(self, sql: str, params: tuple[object, ...]) -> None:
        """Bookkeeping after a forward, written without an fsync of its own: losing it to a
        power loss means a retry comes early or a forwarded message goes again (at least
        once), never a lost message; the next message's fsync takes it to disk anyway.
        With `durability: full` this halves the fsyncs while the upstream is down (each
        message is queued, then deferred)."""
        if self.config.durability == "process":
            self.db.execute(sql, params)
            return
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute(sql, params)
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def _log(
        self, msg_id: str, queue_id: str, event: str, attempt: int, queued_at: float,
        reply: Reply | None = None, error: str = "",
    ) -> None:  # fmt: skip
        self.journal.write(
            RelayRecord(
                time=time.time(),
                sink=self.config.name,
                worker=self.worker,
                msg_id=msg_id,
                queue_id=queue_id,
                event=event,
                upstream=self.target,
                attempt=attempt,
                code=(reply.code or None) if reply else None,
                enhanced=reply.enhanced if reply else "",
                error=error,
                queued_at=queued_at,
            )
        )


def _split(message: str) -> tuple[str, str]:
    """(enhanced code, text) of a reply's text."""
    first, _, rest = message.partition(" ")
    if first[:1] in "245" and first.count(".") == 2:
        return first, rest
    return "", message
