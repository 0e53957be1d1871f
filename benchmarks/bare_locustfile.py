"""The baseline for benchmarks/driver_throughput.py: the least a Locust SMTP user can be.

One persistent smtplib connection per user, one `sendmail` of the same 5000-byte message
per task, one Locust request event per message (as Locust's docs show for custom clients).
No schedule, no routing, no journal. Target: `-H smtp://127.0.0.1:PORT`.

Users wait until every user is spawned, then send for $BARE_SECONDS (default 5) and
idle until Locust's --run-time stops them: a user stopped between tasks can be killed
after it has started its next message, so sending ends before Locust stops anything and
the counts match what the server received. Each process that sent anything writes
`bare-PID.json` (count, failures, first start, last end, epoch seconds) into $BARE_OUT
when the test stops.
"""

from __future__ import annotations

import json
import os
import smtplib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent.event
from locust import User, events, task
from locust.env import Environment

LENGTH = 5000
SENDER = "news@example.com"
RECIPIENT = "user@gmail.test"


def _message(length: int) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: bare locust\r\n"
        "Message-ID: <bare@example.com>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    body = line * ((length - len(head)) // len(line) + 1)
    return (head + body)[: length - 2] + b"\r\n"


MESSAGE = _message(LENGTH)
SECONDS = float(os.environ.get("BARE_SECONDS", "5"))
all_spawned = gevent.event.Event()


class Tally:
    """This process's messages and the span they took."""

    count = 0
    failures = 0
    first_start = 0.0
    last_end = 0.0
    deadline = 0.0  # no message starts after this


@events.spawning_complete.add_listener
def _spawned(**_: Any) -> None:
    Tally.deadline = time.time() + SECONDS
    all_spawned.set()


@events.test_stop.add_listener
def _write_tally(environment: Environment, **_: Any) -> None:
    out = os.environ.get("BARE_OUT")
    if out and Tally.count + Tally.failures:
        Path(out, f"bare-{os.getpid()}.json").write_text(
            json.dumps(
                {
                    "count": Tally.count,
                    "failures": Tally.failures,
                    "first_start": Tally.first_start,
                    "last_end": Tally.last_end,
                }
            )
        )


class BareSmtpUser(User):
    def on_start(self) -> None:
        target = urlsplit(self.host or "smtp://127.0.0.1:25")
        self.smtp = smtplib.SMTP(target.hostname or "127.0.0.1", target.port or 25, timeout=10)
        self.smtp.ehlo()
        all_spawned.wait()

    def on_stop(self) -> None:
        self.smtp.quit()

    @task
    def send(self) -> None:
        start = time.time()
        if start >= Tally.deadline:
            gevent.sleep(1.0)  # done: idle inside the task until Locust stops the user
            return
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self.smtp.sendmail(SENDER, [RECIPIENT], MESSAGE)
        except smtplib.SMTPException as exc:
            error = exc
        elapsed = time.perf_counter() - started
        if error is None:
            Tally.count += 1
        else:
            Tally.failures += 1
        Tally.first_start = min(Tally.first_start or start, start)
        Tally.last_end = max(Tally.last_end, start + elapsed)
        self.environment.events.request.fire(
            request_type="SMTP",
            name="sendmail",
            response_time=elapsed * 1000.0,
            response_length=len(MESSAGE),
            exception=error,
            context={},
        )
