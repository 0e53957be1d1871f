"""The smtplib client against real sinks: each fault maps to its outcome and phase."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.client import (
    Attempt,
    Sender,
    Server,
    Timeouts,
    dot_stuff,
    enhanced_code,
    quote_address,
)
from loadtest.outcomes import Outcome, Phase
from tests.helpers import message, read_csv

FAST = Timeouts(connect=1.0, greeting=0.5, command=1.0, data=1.0, dot=0.5)


def attempt(msg_id: str = "m1") -> Attempt:
    now = time.time()
    return Attempt(msg_id, "promotional", 1, "", now, now, 0.0)


def send(sender: Sender, server: str, msg_id: str = "m1", rcpts=("a@gmail.test",)) -> Attempt:
    record = attempt(msg_id)
    record.server = server
    return sender.send(server, record, "news@example.com", rcpts, message(msg_id).encode())


@pytest.fixture
def pair(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]})
    sender = Sender(
        {
            name: Server(name, "127.0.0.1", sinks.port(name), timeouts=FAST)
            for name in ("primary", "secondary")
        }
    )
    yield sinks, sender
    sender.close()


def test_accepted_and_session_reused(pair):
    sinks, sender = pair
    records = [send(sender, "primary", f"m{i}") for i in range(3)]
    assert [r.outcome for r in records] == [Outcome.ACCEPTED] * 3
    assert [r.new_connection for r in records] == [True, False, False]
    assert all(r.code == 250 and r.enhanced == "2.0.0" for r in records)
    assert all(r.start <= r.connected <= r.end for r in records)
    receipts = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert [r["msg_id"] for r in receipts] == ["m0", "m1", "m2"]
    assert {r["session"] for r in receipts} == {"primary.1"}


def test_a_host_name_is_resolved_an_address_is_not(pair):
    sinks, _ = pair
    # IP addresses skip the name lookup; names still go through it.
    sender = Sender({"byname": Server("byname", "localhost", sinks.port("primary"), timeouts=FAST)})
    try:
        assert send(sender, "byname").outcome is Outcome.ACCEPTED
    finally:
        sender.close()


def test_starttls_then_send(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "tls", "starttls": True}]})
    server = Server("tls", "127.0.0.1", sinks.port("tls"), starttls=True, timeouts=FAST)
    senders = [Sender({"tls": server}) for _ in range(2)]  # one TLS context serves both
    try:
        assert [send(s, "tls").outcome for s in senders] == [Outcome.ACCEPTED] * 2
    finally:
        for s in senders:
            s.close()


@pytest.mark.parametrize("tls", [False, True])
def test_a_kept_session_is_reused_and_one_the_server_closed_is_replaced(start_sinks, tls):
    """Over STARTTLS too: the liveness check of a kept session cannot peek into TLS, so
    it peeks at the TCP stream beneath (it used to raise ValueError on every reuse)."""
    sinks = start_sinks({"sinks": [{"name": "mx", "starttls": tls, "idle_timeout_s": 0.5}]})
    sender = Sender({"mx": Server("mx", "127.0.0.1", sinks.port("mx"), starttls=tls,
                                  timeouts=FAST)})  # fmt: skip
    try:
        kept = [send(sender, "mx", f"m{i}") for i in range(3)]
        assert [(r.outcome, r.new_connection) for r in kept] == [
            (Outcome.ACCEPTED, True), (Outcome.ACCEPTED, False), (Outcome.ACCEPTED, False)
        ]  # fmt: skip
        time.sleep(1.5)  # the sink closes the idle session (421 4.4.2) after 0.5 s
        told = send(sender, "mx", "told")  # the waiting 421 is heard, as without TLS
        assert (told.outcome, told.code, told.new_connection) == (Outcome.DEFERRED, 421, False)
        after = send(sender, "mx", "after")
        assert (after.outcome, after.new_connection) == (Outcome.ACCEPTED, True)
        receipts = read_csv(sinks.journal_dir / "receipts-mx.csv")
        assert [r["msg_id"] for r in receipts] == ["m0", "m1", "m2", "after"]
    finally:
        sender.close()


def test_down_is_refused(pair):
    sinks, sender = pair
    assert sinks.control("primary", "POST", "/faults", {"kind": "down"})[0] == 201
    r = send(sender, "primary")
    assert (r.outcome, r.phase) == (Outcome.REFUSED, Phase.CONNECT)
    assert r.error == "ConnectionRefusedError"


def test_hang_times_out_at_the_greeting(pair):
    sinks, sender = pair
    sinks.control("primary", "POST", "/faults", {"kind": "hang"})
    r = send(sender, "primary")
    assert (r.outcome, r.phase) == (Outcome.TIMEOUT, Phase.GREETING)
    assert r.end - r.start == pytest.approx(FAST.greeting, abs=0.3)


def test_busy_is_a_421_at_the_greeting(pair):
    sinks, sender = pair
    sinks.control("primary", "POST", "/faults", {"kind": "busy"})
    r = send(sender, "primary")
    assert (r.outcome, r.phase, r.code, r.enhanced) == (
        Outcome.DEFERRED,
        Phase.GREETING,
        421,
        "4.3.2",
    )


def test_drop_after_dot_is_ambiguous_and_the_sink_has_it(pair):
    sinks, sender = pair
    sinks.control("primary", "POST", "/faults", {"kind": "drop"})
    r = send(sender, "primary", "dup-1")
    assert (r.outcome, r.phase, r.maybe_duplicate) == (Outcome.DROPPED, Phase.DOT, True)
    (row,) = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert (row["msg_id"], row["outcome"]) == ("dup-1", "dropped")


def test_slow_final_reply_is_a_timeout_after_dot(pair):
    sinks, sender = pair
    sinks.control("primary", "POST", "/faults", {"kind": "latency", "ms": 1500, "stages": ["dot"]})
    r = send(sender, "primary")
    assert (r.outcome, r.phase, r.maybe_duplicate) == (Outcome.TIMEOUT, Phase.DOT, True)


def test_throttle_defers_at_mail_and_session_survives(pair):
    sinks, sender = pair
    sinks.control(
        "primary",
        "POST",
        "/faults",
        {"kind": "throttle", "rate": 0.001, "burst": 1, "preset": "yahoo"},
    )
    first, second = send(sender, "primary", "t1"), send(sender, "primary", "t2")
    assert first.outcome is Outcome.ACCEPTED
    assert (second.outcome, second.phase, second.code, second.enhanced) == (
        Outcome.DEFERRED,
        Phase.MAIL,
        421,
        "4.7.0",
    )
    # 421 closes the channel: the next attempt needs a new connection.
    sinks.control("primary", "DELETE", "/faults")
    third = send(sender, "primary", "t3")
    assert (third.outcome, third.new_connection) == (Outcome.ACCEPTED, True)


def test_partial_recipient_refusal_still_delivers(pair):
    sinks, sender = pair
    sinks.control("primary", "POST", "/faults", {"kind": "recipient_cap", "max": 2})
    r = send(sender, "primary", "p1", rcpts=("a@x.test", "b@x.test", "c@x.test"))
    assert (r.outcome, r.recipients, r.recipients_refused) == (Outcome.ACCEPTED, 3, 1)
    (row,) = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert row["rcpt_count"] == "2"


def test_rejected_recipient_is_final_and_session_kept(pair):
    sinks, sender = pair
    sinks.control(
        "primary",
        "POST",
        "/faults",
        {"kind": "reject", "stage": "rcpt", "code": 550, "enhanced": "5.1.1"},
    )
    r = send(sender, "primary")
    assert (r.outcome, r.phase, r.code, r.enhanced) == (Outcome.REJECTED, Phase.RCPT, 550, "5.1.1")
    sinks.control("primary", "DELETE", "/faults")
    again = send(sender, "primary")
    assert (again.outcome, again.new_connection) == (Outcome.ACCEPTED, False)


def test_connect_timeout_on_an_unroutable_listener():
    # A listening socket whose backlog is full never completes new handshakes in time.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        sender = Sender({"x": Server("x", "127.0.0.1", port, timeouts=FAST)})
        r = send(sender, "x")
        assert r.outcome is Outcome.TIMEOUT
        assert r.phase in (Phase.CONNECT, Phase.GREETING)
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_session_cut_while_idle_is_replaced_not_failed(pair):
    sinks, sender = pair
    assert send(sender, "primary", "before").new_connection
    status, fault = sinks.control("primary", "POST", "/faults", {"kind": "down"})
    assert status == 201
    sinks.control("primary", "DELETE", f"/faults/{fault['id']}")
    after = send(sender, "primary", "after")
    assert (after.outcome, after.new_connection) == (Outcome.ACCEPTED, True)
    assert [r["msg_id"] for r in read_csv(sinks.journal_dir / "receipts-primary.csv")] == [
        "before",
        "after",
    ]


@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=30))
def test_dot_stuff_doubles_every_leading_dot_as_the_regex_did(parts):
    data = b"".join(parts)
    assert dot_stuff(data) == re.sub(rb"(?m)^\.", b"..", data)


def test_lines_starting_with_dots_arrive_intact(pair):
    sinks, sender = pair
    body = ".\r\n..two\r\n.three\r\nfour.\r\n"
    record = sender.send(
        "primary", attempt(), "news@example.com", ("a@gmail.test",), message("m1", body).encode()
    )
    assert record.outcome is Outcome.ACCEPTED
    (receipt,) = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert int(receipt["size"]) == len(message("m1", body).encode())


@given(
    st.from_regex(r"[A-Za-z0-9.'+=_-]{1,8}@[A-Za-z0-9.-]{1,8}", fullmatch=True)
    | st.text(alphabet="ab.@-_+'\"<> ()[],;:\\\u00e9", max_size=20)
)
def test_quote_address_is_what_smtplib_quoteaddr_gives(address):
    assert quote_address(address) == smtplib.quoteaddr(address)


def test_enhanced_code_of_a_reply_and_of_smtplibs_own_str_errors():
    assert enhanced_code(b"4.7.1 Try again later") == "4.7.1"
    assert enhanced_code(b"Try again later") == ""
    assert enhanced_code("Line too long.") == ""  # smtplib.SMTPResponseException(500, str)
    assert enhanced_code("5.5.2 said in str") == "5.5.2"


def test_a_message_larger_than_the_socket_buffer_arrives_whole(pair):
    """One send() takes what the socket's buffer holds; the rest goes out after it."""
    sinks, _ = pair
    roomy = Timeouts(data=10.0)  # a busy machine may take a while over 8 MB
    sender = Sender(
        {"primary": Server("primary", "127.0.0.1", sinks.port("primary"), timeouts=roomy)}
    )
    body = ("z" * 998 + "\r\n") * 8000  # 8 MB: loopback takes about 4 in one send()
    data = message("big", body).encode()
    try:
        record = sender.send("primary", attempt("big"), "news@example.com", ("a@gmail.test",), data)
    finally:
        sender.close()
    assert (record.outcome, record.bytes) == (Outcome.ACCEPTED, len(data))
    (receipt,) = read_csv(sinks.journal_dir / "receipts-primary.csv")
    assert int(receipt["size"]) == len(data)


def test_a_server_that_stops_reading_the_message_times_the_data_out():
    """The write of a message the server no longer reads ends at the data timeout, once,
    as a TIMEOUT at DATA (not a drop): the first send() and the rest share one limit."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        held.append(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader = conn.makefile("rb")
        conn.sendall(b"220 stall.test ESMTP\r\n")
        for line in reader:
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250 stall.test\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                return  # and read no more
            else:
                conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    timeouts = Timeouts(connect=1.0, greeting=1.0, command=1.0, data=1.0, dot=1.0)
    sender = Sender({"x": Server("x", "127.0.0.1", port, timeouts=timeouts)})
    data = message("m1", ("z" * 998 + "\r\n") * 30000).encode()  # 30 MB: fills every buffer
    try:
        r = sender.send("x", attempt(), "news@example.com", ("a@gmail.test",), data)
        assert (r.outcome, r.phase, r.error) == (Outcome.TIMEOUT, Phase.DATA, "TimeoutError")
        assert 1.0 <= r.end - r.start < 2.0
    finally:
        sender.close()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_a_kept_session_is_checked_on_gevents_socket_as_on_the_standard_one():
    """Under Locust the session's socket is gevent's: the liveness check peeks at the
    kernel's socket it keeps beneath (non-blocking already), one system call; open with
    nothing waiting, open with a reply waiting, and closed read as on a standard socket."""
    import gevent.socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        for make in (socket.socket, gevent.socket.socket):
            client = smtplib.SMTP()
            client.sock = make(socket.AF_INET, socket.SOCK_STREAM)
            client.sock.settimeout(5.0)
            client.sock.connect(listener.getsockname())
            peer, _ = listener.accept()
            try:
                assert Sender._alive(client) is True  # nothing to read: still open
                peer.sendall(b"421 4.4.2 closing\r\n")
                time.sleep(0.05)
                assert Sender._alive(client) is True  # a reply waits: let it speak
                assert client.sock.recv(100) == b"421 4.4.2 closing\r\n"  # left in place
                peer.close()
                time.sleep(0.05)
                assert Sender._alive(client) is False  # EOF: the server closed it
            finally:
                client.sock.close()
