"""Garbage on the wire gets an SMTP error or a closed connection, and the sink carries on."""

from __future__ import annotations

import random
import re
import socket
import struct
import time

import pytest

from tests.helpers import RawClient, message, read_csv, wait_until

_REPLY_WITH_ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3} ")


def still_serving(sinks, connections: int, accepted_before: int = 0) -> None:
    """Another client can send, and the counters agree with what happened on the wire."""
    with sinks.smtp("mx") as client:
        client.sendmail("a@example.com", ["b@example.com"], message("after"))
    counters = sinks.sink("mx").counters
    receipts = read_csv(sinks.journal_dir / "receipts-mx.csv")
    assert counters.accepted == accepted_before + 1 == len(receipts)
    assert receipts[-1]["msg_id"] == "after"
    assert counters.sessions == connections + 1
    assert wait_until(lambda: counters.active_sessions == 0), counters
    refusals = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert counters.deferred + counters.rejected == len(refusals)


def replies_until_closed(raw: RawClient, limit: float = 2.0) -> list[tuple[int, bytes]]:
    replies = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            reply = raw.reply()
        except TimeoutError:
            break
        if reply is None:
            break
        replies.append(reply)
    return replies


@pytest.mark.parametrize("seed", range(6))
def test_random_binary_bytes(start_sinks, seed):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    garbage = random.Random(seed).randbytes(4096)
    with RawClient(sinks.port("mx")) as raw:
        assert raw.reply()[0] == 220
        raw.send(garbage + b"\r\nQUIT\r\n")
        replies = replies_until_closed(raw)
    assert replies, "some answer or other"
    codes = [code for code, _ in replies]
    # Every line is refused, until the sink gives up (502) or the QUIT goes through.
    assert all(code >= 500 for code in codes[:-1]), replies
    assert codes[-1] in (221, 502) or codes[-1] >= 500
    for code, text in replies:
        if code >= 400:
            assert _REPLY_WITH_ENHANCED.match(text), (code, text)
            assert not re.match(rb"^\d\.\d+\.\d+ \d\.\d+\.\d+ ", text), "one enhanced code"
    refusals = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert len(refusals) >= sum(1 for c in codes if c >= 400)
    still_serving(sinks, connections=1)


def test_too_many_unknown_commands_end_the_session(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        replies = [raw.command(f"XCMD{i}".encode()) for i in range(5)]
        assert [code for code, _ in replies] == [500] * 4 + [502]
        assert replies[0][1].startswith(b"5.5.1 Error: command")
        assert replies[-1][1] == b"5.5.1 Too many unrecognized commands, goodbye."
        assert raw.closed_by_server()
    refusals = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert [(r["code"], r["enhanced"]) for r in refusals] == [("500", "5.5.1")] * 4 + [
        ("502", "5.5.1")
    ]
    still_serving(sinks, connections=1)


def test_100kb_line_without_crlf(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        raw.send(b"EHLO " + b"x" * 100_000)
        time.sleep(0.05)
        assert raw.command(b"") == (500, b"5.5.6 Error: command line too long")
        assert raw.command(b"NOOP")[0] == 250, "one error, then the session goes on"
    # The same, with the client leaving before it ever ends the line.
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        raw.send(b"MAIL FROM:<" + b"y" * 100_000)
    still_serving(sinks, connections=2)


def test_100kb_line_inside_data_is_taken_whole(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    text = message("long", body="z" * 100_000 + "\r\n")
    with sinks.smtp("mx") as client:
        client.sendmail("a@example.com", ["b@example.com"], text)
    (row,) = read_csv(sinks.journal_dir / "receipts-mx.csv")
    assert int(row["size"]) == len(text)


@pytest.mark.parametrize(
    "line",
    [
        b"\x00\x00\x00",
        b"MAIL\x00FROM:<a@example.com>",
        b"MAIL FROM:<a\x00b@example.com>",
        b'MAIL FROM:<"a\x00b"@example.com>',
        b"MAIL FROM:<a@exa\x00mple.com>",
        b"MAIL FROM:<a\x1bb@example.com>",
        b"MAIL FROM:<a\rb@example.com>",
    ],
)
def test_control_characters_in_commands_are_refused(start_sinks, line):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        assert raw.command(b"EHLO client.test")[0] == 250
        code, text = raw.command(line)
        assert code >= 500, (line, code, text)
        assert _REPLY_WITH_ENHANCED.match(text)
        assert raw.command(b"NOOP")[0] == 250
    (row,) = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert row["code"] == str(code)
    still_serving(sinks, connections=1)


def test_control_characters_in_recipients_are_refused(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        raw.command(b"EHLO client.test")
        assert raw.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert raw.command(b"RCPT TO:<\x00@example.com>")[0] == 553
        assert raw.command(b"RCPT TO:<b@example.com>")[0] == 250
        assert raw.command(b"DATA")[0] == 354
        raw.send(message("clean").encode() + b".\r\n")
        assert raw.reply()[0] == 250
    (row,) = read_csv(sinks.journal_dir / "receipts-mx.csv")
    assert row["rcpt_count"] == "1"
    still_serving(sinks, connections=1, accepted_before=1)


def test_nul_bytes_in_the_body_are_kept_and_counted(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    text = message("nul", body="a\x00b\x00\x00c\r\n").encode()
    with sinks.smtp("mx") as client:
        client.sendmail("a@example.com", ["b@example.com"], text)
    (row,) = read_csv(sinks.journal_dir / "receipts-mx.csv")
    assert (row["msg_id"], int(row["size"])) == ("nul", len(text))


@pytest.mark.parametrize(
    ("commands", "code", "enhanced"),
    [
        ([b"MAIL FROM:<a@example.com>"], 503, "5.5.1"),  # before EHLO
        ([b"AUTH PLAIN"], 503, "5.5.1"),  # before EHLO
        ([b"EHLO c.test", b"DATA"], 503, "5.5.1"),  # before MAIL
        ([b"EHLO c.test", b"RCPT TO:<b@example.com>"], 503, "5.5.1"),  # before MAIL
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com>", b"DATA"], 503, "5.5.1"),  # no RCPT
        ([b"EHLO c.test", b"MAIL FROM:<a@x.test>", b"MAIL FROM:<a@x.test>"], 503, "5.5.1"),
        ([b"EHLO"], 501, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:"], 501, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com> SIZE=big"], 501, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com> BODY=9BIT"], 501, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com> COLOUR=red"], 555, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com>", b"RCPT TO:"], 501, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@x.test> X=1"], 555, "5.5.4"),
        ([b"EHLO c.test", b"MAIL FROM:<@>"], 553, "5.1.3"),
        ([b"RSET now"], 501, "5.5.4"),
        ([b"HELP XYZZY"], 501, "5.5.4"),
        ([b"STARTTLS"], 454, "4.7.0"),
        ([b"EXPN staff"], 502, "5.5.1"),
        ([b"BDAT 100 LAST"], 500, "5.5.1"),
    ],
)
def test_out_of_order_and_malformed_commands(start_sinks, commands, code, enhanced):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with RawClient(sinks.port("mx")) as raw:
        raw.reply()
        for line in commands[:-1]:
            assert raw.command(line)[0] < 400, line
        got, text = raw.command(commands[-1])
        assert (got, text.split(b" ", 1)[0].decode()) == (code, enhanced), text
        assert raw.command(b"RSET")[0] == 250, "the session goes on"
    (row,) = read_csv(sinks.journal_dir / "refusals-mx.csv")
    assert (row["code"], row["enhanced"]) == (str(code), enhanced)
    still_serving(sinks, connections=1)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_vanishing_mid_data(start_sinks, how):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    raw = RawClient(sinks.port("mx"))
    raw.reply()
    raw.command(b"EHLO c.test")
    raw.command(b"MAIL FROM:<a@example.com>")
    raw.command(b"RCPT TO:<b@example.com>")
    assert raw.command(b"DATA")[0] == 354
    raw.send(message("half").encode()[:60])
    if how == "reset":
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    still_serving(sinks, connections=1)
    assert [r["msg_id"] for r in read_csv(sinks.journal_dir / "receipts-mx.csv")] == ["after"]


def test_many_clients_vanishing_at_every_step(start_sinks):
    """Clients cut off after each step of a transaction leave no session behind."""
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    steps = [
        b"",
        b"EHLO c.test\r\n",
        b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\n",
        b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
        b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
        b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSub",
    ]
    for data in steps:
        for linger in (False, True):
            sock = socket.create_connection(("127.0.0.1", sinks.port("mx")), timeout=2)
            if data:
                sock.sendall(data)
            if linger:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    still_serving(sinks, connections=2 * len(steps))
