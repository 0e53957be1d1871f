"""RFC 2920 pipelining in the sender decides every attempt as one command at a time does.

Each case puts a fault on a real sink and sends the same messages twice, to two fresh
sinks: once pipelined (MAIL, every RCPT and DATA in one write, the sink offering
PIPELINING) and once with `pipelining: false`. The attempt records (outcome, phase, code,
enhanced code, each RCPT's reply, sessions reused or not) and what each sink took must be
the same; only the time fields differ. A case with a 421 or a refusal mid-envelope checks
that the replies the server still owes a pipelined session are read (the next message
reuses it) or that the session is given up, exactly as without pipelining.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loadtest.client import Attempt, Sender, Server, Timeouts
from loadtest.outcomes import Outcome, Phase
from tests.helpers import read_csv
from tests.integration.test_client import send

FAST = Timeouts(connect=1.0, greeting=0.5, command=1.0, data=1.0, dot=0.5)
# Messages sent in each case: (msg_id, recipients); a dead mailbox is `unknown-*`.
MESSAGES = [
    ("m1", ("a@gmail.test", "b@gmail.test")),
    ("m2", ("unknown-1@gmail.test",)),
    ("m3", ("c@gmail.test", "unknown-2@gmail.test", "d@gmail.test")),
    ("m4", ("e@gmail.test",)),
]
CASES: dict[str, dict[str, Any]] = {
    "accepted": {},
    "reject at mail, 5xx": {"kind": "reject", "stage": "mail", "code": 550, "enhanced": "5.7.1"},
    "reject at mail, 4xx": {"kind": "reject", "stage": "mail", "code": 451, "enhanced": "4.3.0"},
    "reject at mail, 421": {"kind": "reject", "stage": "mail", "code": 421, "enhanced": "4.7.0"},
    "reject at rcpt": {"kind": "reject", "stage": "rcpt", "code": 550, "enhanced": "5.1.1"},
    "reject at rcpt, 421": {"kind": "reject", "stage": "rcpt", "code": 421, "enhanced": "4.7.0"},
    "reject at data": {"kind": "reject", "stage": "data", "code": 554, "enhanced": "5.7.1"},
    "reject at dot": {"kind": "reject", "stage": "dot", "code": 550, "enhanced": "5.7.1"},
    "unknown mailboxes": {"kind": "mailboxes"},
    "recipient cap": {"kind": "recipient_cap", "max": 1},
    "greylist": {"kind": "greylist"},
    "drop after dot": {"kind": "drop"},
    "slow rcpt: timeout": {"kind": "latency", "ms": 1500, "stages": ["rcpt"]},
}
COMPARED = ("outcome", "phase", "code", "enhanced", "error", "replies", "recipients",
            "recipients_refused", "new_connection", "maybe_duplicate", "bytes")  # fmt: skip


def run_case(start_sinks, tmp_path, fault: dict[str, Any], pipelining: bool) -> tuple[list, list]:
    sinks = start_sinks({"sinks": [{"name": "primary"}]}, tmp_path / f"pipelining-{pipelining}")
    if fault:
        assert sinks.control("primary", "POST", "/faults", fault)[0] == 201
    server = Server("primary", "127.0.0.1", sinks.port("primary"), timeouts=FAST,
                    pipelining=pipelining)  # fmt: skip
    sender = Sender({"primary": server})
    try:
        records: list[Attempt] = [send(sender, "primary", m, r) for m, r in MESSAGES]
    finally:
        sender.close()
    sinks.close()  # every journal row on disk
    taken = [(r["msg_id"], r["rcpts"], r["session"])
             for r in read_csv(sinks.journal_dir / "receipts-primary.csv")]  # fmt: skip
    return [{k: getattr(rec, k) for k in COMPARED} for rec in records], taken


@pytest.mark.parametrize("fault", CASES.values(), ids=CASES.keys())
def test_pipelined_attempts_are_decided_as_one_command_at_a_time(start_sinks, tmp_path, fault):
    pipelined = run_case(start_sinks, tmp_path, fault, pipelining=True)
    one_at_a_time = run_case(start_sinks, tmp_path, fault, pipelining=False)
    assert pipelined == one_at_a_time


# A scripted server's answer to a line: its reply, and whether it closes the channel then.
Answer = Callable[[str, str], tuple[str, bool]]


@contextlib.contextmanager
def scripted(answer: Answer, pipelining: bool = True) -> Iterator[tuple[Sender, list[str]]]:
    """A sender to one connection of a scripted SMTP server on 127.0.0.1 (a thread): it
    greets, then answers each line by `answer(verb, line)`; the lines it read are listed."""
    seen: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 scripted\r\n")
            for raw in lines:
                line = raw.decode().rstrip("\r\n")
                seen.append(line)
                reply, close = answer(line.split(" ", 1)[0].upper(), line)
                conn.sendall(reply.encode())
                if close:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server = Server("scripted", "127.0.0.1", listener.getsockname()[1], timeouts=FAST,
                    pipelining=pipelining)  # fmt: skip
    sender = Sender({"scripted": server})
    try:
        yield sender, seen
    finally:
        sender.close()
        thread.join(5)
        listener.close()


def test_a_354_to_a_data_with_no_recipient_gets_an_empty_message(tmp_path):
    """A server that answers a pipelined DATA 354 though it refused every recipient (RFC
    2920 3.1 asks for 503 or 554) gets "." alone, as Postfix's client sends, and the
    session stays in step: the attempt is the RCPT's refusal and the session is kept."""
    replies = {"EHLO": "250-test\r\n250 PIPELINING\r\n", "MAIL": "250 2.1.0 ok\r\n",
               "RCPT": "550 5.1.1 no such user\r\n", "DATA": "354 go on\r\n",
               ".": "250 2.0.0 nothing queued\r\n", "RSET": "250 2.0.0 ok\r\n",
               "QUIT": "221 bye\r\n"}  # fmt: skip
    with scripted(lambda verb, _: (replies[verb], verb == "QUIT")) as (sender, seen):
        record = send(sender, "scripted", "m1", ("nobody@gmail.test",))
        assert "scripted" in sender.sessions  # kept for the next message
    assert (record.outcome, record.phase, record.code, record.enhanced) == (
        Outcome.REJECTED, Phase.RCPT, 550, "5.1.1")  # fmt: skip
    assert [line.split(" ", 1)[0].upper() for line in seen] == [
        "EHLO", "MAIL", "RCPT", "DATA", ".", "RSET", "QUIT"]  # fmt: skip


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_a_421_after_a_recipient_was_taken_ends_the_attempt_as_that_421(tmp_path, pipelining):
    """A server that takes the first recipient and closes the channel at the second (421,
    RFC 5321 3.8): the transaction is over, so the attempt is a deferral at RCPT with that
    421, the session is given up and no DATA is sent (it was recorded as DROPPED at DATA,
    code 0, the connection found closed when DATA's reply was read)."""
    rcpts: list[str] = []

    def answer(verb: str, line: str) -> tuple[str, bool]:
        if verb == "EHLO":
            return "250-test\r\n250 PIPELINING\r\n", False
        if verb == "MAIL":
            return "250 2.1.0 ok\r\n", False
        if verb == "RCPT":
            rcpts.append(line)
            if len(rcpts) == 1:
                return "250 2.1.5 ok\r\n", False
            return "421 4.7.0 too busy, closing\r\n", True  # and the channel closes
        return "500 5.5.1 not expected\r\n", False

    with scripted(answer, pipelining) as (sender, seen):
        record = send(sender, "scripted", "m1", ("a@gmail.test", "b@gmail.test"))
        assert "scripted" not in sender.sessions  # the server closed it: not reused
    assert (record.outcome, record.phase, record.code, record.enhanced) == (
        Outcome.DEFERRED, Phase.RCPT, 421, "4.7.0")  # fmt: skip
    assert record.replies == [(250, ""), (421, "4.7.0")]
    assert record.recipients_refused == 1
    assert not record.maybe_duplicate
    verbs = [line.split(" ", 1)[0].upper() for line in seen]
    assert verbs == ["EHLO", "MAIL", "RCPT", "RCPT"]  # no DATA read by the server
