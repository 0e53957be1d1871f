"""The sink's shortcuts around aiosmtpd's slow paths give aiosmtpd's own answers."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given
from hypothesis import strategies as st

from sinks.config import SinkConfig
from sinks.protocol import SinkSMTP
from sinks.sink import Sink

_CHARS = "aZ09.-_+=!#'@<> \t()\"[]:,;\\é"
_ATOM = st.text(alphabet="ab.-+=_!", min_size=0, max_size=6)


def _outcome(getaddr: Callable[[SMTP, str], object], arg: str) -> object:
    proto = SinkSMTP.__new__(SinkSMTP)  # _getaddr only reads class attributes
    try:
        return getaddr(proto, arg)
    except Exception as exc:  # noqa: BLE001 - the email parser has bugs of its own ("0@")
        return type(exc)


@given(
    st.one_of(
        st.text(alphabet=_CHARS, max_size=30),
        st.builds(
            lambda local, domain, sep, rest: f"<{local}@{domain}>{sep}{rest}",
            _ATOM,
            _ATOM,
            st.sampled_from(["", " ", "  ", "\t", " (c) ", "("]),
            st.sampled_from(["", "SIZE=100", "BODY=8BITMIME SMTPUTF8", "x (y)", " z"]),
        ),
    )
)
@example("<a.b@c.d> SIZE=1")
@example("<a..b@c>")
@example("<a@b>  (comment) SIZE=1")
@example("<>")
@example('<"a b"@c>')
@example("<a@[127.0.0.1]>")
def test_plain_path_shortcut_parses_like_aiosmtpd(arg: str) -> None:
    assert _outcome(SinkSMTP._getaddr, arg) == _outcome(SMTP._getaddr, arg)


def test_connection_copied_from_template_matches_a_full_init(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    sink = Sink(SinkConfig(name="primary", auth={"credentials": {"u": "p"}}), tmp_path)
    try:
        full = SinkSMTP(sink, sink.handler, hostname="mx.test", loop=loop)
        copy = SinkSMTP(sink, sink.handler, like=full)
        assert vars(copy).keys() == vars(full).keys()
        assert copy.hostname == "mx.test"
        assert copy._handle_hooks == full._handle_hooks
        assert copy._smtp_methods.keys() == full._smtp_methods.keys()
        assert all(m.__self__ is copy for m in copy._smtp_methods.values())
        assert copy._auth_methods.keys() == full._auth_methods.keys() == {"PLAIN", "LOGIN"}
        assert all(a.method.__self__ is copy for a in copy._auth_methods.values())
        assert copy._stream_reader is not full._stream_reader
        assert copy.command_size_limits is not full.command_size_limits
    finally:
        sink.journals.close()
        loop.close()


def test_ehlo_reply_arrives_in_one_piece(start_sinks) -> None:
    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    with socket.create_connection(("127.0.0.1", sinks.port("primary")), timeout=5) as conn:
        conn.recv(1024)  # banner
        conn.sendall(b"EHLO client.test\r\n")
        reply = conn.recv(4096)
        lines = reply.decode().split("\r\n")
        assert lines[0] == "250-primary.maildrill.test"
        assert lines[-2].startswith("250 ")
        assert lines[-1] == ""
        assert "250-PIPELINING" in lines
        conn.sendall(b"QUIT\r\n")


def test_idle_timeout_counts_from_the_last_command(start_sinks) -> None:
    sinks = start_sinks({"sinks": [{"name": "primary", "idle_timeout_s": 0.4}]})
    with sinks.smtp("primary") as client:
        started = time.monotonic()
        for _ in range(6):  # 0.6 s of activity: the deadline keeps moving
            time.sleep(0.1)
            assert client.noop()[0] == 250
        assert time.monotonic() - started > 0.5
        idle = time.monotonic()
        client.sock.settimeout(3)
        # Nothing was asked: what comes is Postfix's timeout reply, then the close.
        assert client.getreply() == (421, b"4.4.2 Error: timeout exceeded")
        assert 0.3 < time.monotonic() - idle < 1.5
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.getreply()
