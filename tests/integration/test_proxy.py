"""The fault proxy: each fault against a plain sink behind it, on 127.0.0.1 port 0.

The upstream sink and the proxy run as `start_sinks` runs any sink; clients are smtplib
or a raw socket, as a real sender would be.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import select
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import termios
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from loadtest.scenario import ScenarioError, parse_scenario
from sinks.config import ConfigError, parse_config
from sinks.effects import Stage
from sinks.smtp_watch import MAX_UNANSWERED, Command, Message, ServerReply, SmtpWatch
from tests.fuzz_smtp import SinkProcess
from tests.helpers import (
    LATE_S,
    RawClient,
    connect_refused,
    message,
    none_answers,
    read_csv,
    wait_until,
)

SENDER, RCPT = "news@example.com", ["a@gmail.test"]


@pytest.fixture
def start_pair(start_sinks, tmp_path):
    """start_pair(upstream=..., proxy=...) -> (mta, px): an upstream sink 'mta' and a proxy
    'px' in front of it. Stopped proxy first, once the upstream has seen its connections
    end: a sink stopped with connections open leaves them to a loop that is stopping."""
    made = []

    def start(upstream=None, proxy=None):
        journals = tmp_path / "j"
        mta = start_sinks({"sinks": [{"name": "mta", **(upstream or {})}]}, journal_dir=journals)
        config = {"name": "px", "mode": "proxy", "upstream": {"port": mta.port("mta")},
                  **(proxy or {})}  # fmt: skip
        px = start_sinks({"sinks": [config]}, journal_dir=journals)
        made.append((mta, px))
        return mta, px

    yield start
    for mta, px in made:
        px.close()
        wait_until(lambda: mta.sink("mta").counters.active_sessions == 0)  # noqa: B023
        mta.close()


def refused(port: int) -> bool:
    """Nothing listens: refused, or reset when the listener closed as the connection came."""
    try:
        return connect_refused(port)
    except ConnectionResetError:
        return True


def fault(px, kind: str, **params) -> str:
    status, body = px.control("px", "POST", "/faults", {"kind": kind, **params})
    assert status == 201, body
    return str(body["id"])


def journal(tmp_path, name: str) -> list[dict[str, str]]:
    return read_csv(tmp_path / "j" / name)


def mta_sessions(mta) -> int:
    return int(mta.control("mta", "GET", "/status")[1]["counters"]["sessions"])


# -- without faults: transparent ------------------------------------------------------------


def test_without_faults_the_proxy_is_transparent(start_pair, tmp_path):
    mta, px = start_pair()
    with px.smtp("px") as client:
        code, banner = client.ehlo()
        assert code == 250
        assert banner.startswith(b"mta.maildrill.test")  # the upstream speaks, not the proxy
        for i in range(20):
            assert client.sendmail(SENDER, RCPT, message(f"t{i}")) == {}
    with px.smtp("px") as client:  # a second connection, several recipients
        client.sendmail(SENDER, ["a@gmail.test", "b@yahoo.test"], message("t20"))
    assert wait_until(
        lambda: sum(r["event"] == "close" for r in journal(tmp_path, "proxy-px.csv")) == 2
    )
    receipts = journal(tmp_path, "receipts-mta.csv")
    assert sorted(r["msg_id"] for r in receipts) == sorted(f"t{i}" for i in range(21))
    rows = journal(tmp_path, "proxy-px.csv")
    passed = [r for r in rows if r["event"] == "message"]
    assert [r["msg_id"] for r in passed] == [f"t{i}" for i in range(21)]
    assert {r["code"] for r in passed} == {"250"}
    assert {r["cause"] for r in passed} == {""}
    size_at = {r["msg_id"]: r["size"] for r in receipts}
    assert all(r["size"] == size_at[r["msg_id"]] for r in passed)
    closes = [r for r in rows if r["event"] == "close"]
    assert len(closes) == 2
    assert {r["cause"] for r in closes} <= {"client", "server"}
    counters = px.control("px", "GET", "/status")[1]["counters"]
    mta_counters = mta.control("mta", "GET", "/status")[1]["counters"]
    assert counters["accepted"] == mta_counters["accepted"] == 21
    assert counters["bytes"] == mta_counters["bytes"]
    assert counters["sessions"] == mta_counters["sessions"] == 2
    assert counters["cut"] == counters["upstream_errors"] == 0
    assert journal(tmp_path, "faults-px.csv") == []


def test_starttls_goes_through_and_the_session_is_opaque_after_it(start_pair, tmp_path):
    _mta, px = start_pair(upstream={"starttls": True})
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with px.smtp("px") as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=context)[0] == 220
        client.ehlo()
        assert client.sendmail(SENDER, RCPT, message("tls1")) == {}
        assert client.sendmail(SENDER, RCPT, message("tls2")) == {}
    assert wait_until(lambda: any(r["event"] == "close" for r in journal(tmp_path, "proxy-px.csv")))
    assert [r["msg_id"] for r in journal(tmp_path, "receipts-mta.csv")] == ["tls1", "tls2"]
    rows = journal(tmp_path, "proxy-px.csv")
    assert [r for r in rows if r["event"] == "message"] == []  # encrypted: not seen
    (close,) = [r for r in rows if r["event"] == "close"]
    assert close["detail"] == "starttls"


def test_a_proxy_for_a_dead_upstream_closes_the_client(start_sinks, tmp_path):
    with socket.socket() as holder:  # a port nothing listens on
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    px = start_sinks({"sinks": [{"name": "px", "mode": "proxy", "upstream": {"port": port}}]},
                     journal_dir=tmp_path / "j")  # fmt: skip
    with RawClient(px.port("px")) as raw:
        assert raw.closed_by_server()
    assert wait_until(lambda: any(r["event"] == "close" for r in journal(tmp_path, "proxy-px.csv")))
    (close,) = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "close"]
    assert (close["cause"], close["detail"]) == ("upstream-error", "ConnectionRefusedError")


def test_a_client_past_the_reply_window_and_with_content_before_its_354_is_followed(
    start_pair, tmp_path
):
    """The relay waits for replies past MAX_UNANSWERED commands and after DATA; a client
    that sends its message before the 354 (which RFC 2920 forbids) gets it through, seen."""
    _mta, px = start_pair()
    many = 2 * MAX_UNANSWERED + 10
    envelope = b"MAIL FROM:<news@example.com>\r\nRCPT TO:<a@gmail.test>\r\nDATA\r\n"
    with RawClient(px.port("px"), timeout=10) as raw:
        assert raw.reply()[0] == 220  # type: ignore[index]
        raw.send(b"EHLO raw.test\r\n" + b"RSET\r\n" * many + envelope
                 + message("early").encode() + b".\r\nQUIT\r\n")  # fmt: skip
        codes = [raw.reply()[0] for _ in range(many + 6)]  # type: ignore[index]
    assert codes == [250] * (many + 3) + [354, 250, 221]
    assert wait_until(lambda: any(r["event"] == "close" for r in journal(tmp_path, "proxy-px.csv")))
    passed = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "message"]
    assert [(r["msg_id"], r["code"]) for r in passed] == [("early", "250")]


def test_a_client_that_leaves_while_its_data_waits_for_the_354_ends_the_session(
    start_pair, tmp_path
):
    """The relay reads nothing after DATA until the server answers it, yet still sees the
    client leave: the session ends then, not when the server speaks again."""
    slow_354 = {"kind": "latency", "ms": 60_000, "stages": ["data"]}
    mta, px = start_pair(upstream={"behaviours": [slow_354]})
    with RawClient(px.port("px"), timeout=10) as raw:
        assert raw.reply()[0] == 220  # type: ignore[index]
        assert raw.command(b"EHLO raw.test")[0] == 250  # type: ignore[index]
        assert raw.command(b"MAIL FROM:<news@example.com>")[0] == 250  # type: ignore[index]
        assert raw.command(b"RCPT TO:<a@gmail.test>")[0] == 250  # type: ignore[index]
        raw.send(b"DATA\r\n")
        assert wait_until(lambda: mta.sink("mta").counters.active_sessions == 1)
    assert wait_until(lambda: px.sink("px").counters.active_sessions == 0, 5)
    (close,) = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "close"]
    assert close["cause"] == "client"


# -- each fault -------------------------------------------------------------------------------


def test_down_refuses_and_cuts_open_sessions_then_comes_back(start_pair, tmp_path):
    _mta, px = start_pair()
    port = px.port("px")
    client = px.smtp("px")
    client.ehlo()
    down = fault(px, "down")
    assert connect_refused(port)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail(SENDER, RCPT, message("cut"))
    client.close()
    assert px.control("px", "GET", "/health")[1]["listening"] is False
    assert px.control("px", "DELETE", f"/faults/{down}")[0] == 200
    with px.smtp("px") as again:
        assert again.sendmail(SENDER, RCPT, message("after")) == {}
    assert [r["msg_id"] for r in journal(tmp_path, "receipts-mta.csv")] == ["after"]
    faults = journal(tmp_path, "faults-px.csv")
    assert [(f["sink"], f["kind"], f["state"]) for f in faults] == [
        ("px", "down", "start"), ("px", "down", "stop")
    ]  # fmt: skip
    closes = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "close"]
    assert closes[0]["cause"] == "down"
    assert px.control("px", "GET", "/status")[1]["counters"]["cut"] == 1


def test_scheduled_faults_run_on_the_proxy_and_are_journaled(start_pair, tmp_path):
    schedule = [{"kind": "down", "at": 0.2, "duration": 0.3}]
    _mta, px = start_pair(proxy={"faults": schedule})
    port = px.port("px")
    assert wait_until(lambda: refused(port), timeout=2)
    assert wait_until(lambda: not refused(port), timeout=2)
    # The listener opens again just before the stop row is written.
    assert wait_until(lambda: len(journal(tmp_path, "faults-px.csv")) == 2)
    rows = journal(tmp_path, "faults-px.csv")
    assert [(r["kind"], r["state"], r["origin"]) for r in rows] == [
        ("down", "start", "schedule"), ("down", "stop", "schedule")
    ]  # fmt: skip
    # The window is the plan's: a start made late by a loaded machine does not move the end.
    start_at = json.loads(rows[0]["params"])["start_at"]
    assert start_at - 0.002 <= float(rows[0]["time"]) < start_at + LATE_S
    assert start_at + 0.3 - 0.002 <= float(rows[1]["time"]) < start_at + 0.3 + LATE_S


def test_hang_times_out_the_greeting_and_never_reaches_the_upstream(start_pair, tmp_path):
    mta, px = start_pair()
    fault(px, "hang")
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", px.port("px")), timeout=0.5) as sock,
        pytest.raises(TimeoutError),
    ):
        sock.recv(1024)  # no banner
    assert 0.45 <= time.monotonic() - started < 2.0
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtplib.SMTP("127.0.0.1", px.port("px"), timeout=0.3)

    def closes():
        return [r["cause"] for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "close"]

    assert wait_until(lambda: closes() == ["hang", "hang"])  # each when its client gave up
    assert mta_sessions(mta) == 0


def test_hang_freezes_open_relays_both_ways_until_it_clears(start_pair, tmp_path):
    """Connections open before the fault: a command gets no reply, a final dot is not
    passed on (the upstream commits nothing), a new connection reaches no upstream. At
    the clear the held bytes go on; a client that left meanwhile is cut, and what it had
    sent is dropped, not delivered late."""
    mta, px = start_pair()
    port = px.port("px")
    proxy = px.sink("px")
    receipts = tmp_path / "j" / "receipts-mta.csv"
    with (
        RawClient(port, timeout=5) as mail,
        RawClient(port, timeout=5) as kept,
        RawClient(port, timeout=5) as left,
    ):
        mail.reply()
        assert mail.command(b"EHLO c.test") is not None
        assert kept.open_data() == left.open_data() == 354
        fault(px, "hang")
        mail.send(b"MAIL FROM:<a@example.com>\r\n")
        kept.send(message("kept").encode() + b"\r\n.\r\n")
        left.send(message("left").encode() + b"\r\n.\r\n")
        late = RawClient(port, timeout=5)  # connects during the fault
        assert none_answers(mail, kept, left, late)
        assert read_csv(receipts) == [], "no final dot got through"
        assert mta_sessions(mta) == 3, "the new connection reached no upstream"
        left.close()  # gave up, as a sender past its dot timeout

        def eofs() -> int:
            return sum(relay.client_proto.eof for relay in proxy.relays)

        assert wait_until(lambda: eofs() == 1)  # the proxy has seen it leave
        px.control("px", "DELETE", "/faults?kind=hang")
        assert mail.reply() == (250, b"2.1.0 Ok")
        code, text = kept.reply() or (0, b"")
        assert (code, text.startswith(b"2.0.0 Ok: queued as")) == (250, True)
        with late:
            code, _ = late.reply() or (0, b"")
            assert code == 220, "a connection held at the door reaches the upstream at the clear"
    assert [r["msg_id"] for r in read_csv(receipts)] == ["kept"]
    assert wait_until(lambda: mta.sink("mta").counters.active_sessions == 0)
    assert [r["msg_id"] for r in read_csv(receipts)] == ["kept"], "nothing late for `left`"
    assert mta_sessions(mta) == 4


def test_hang_scope_new_keeps_new_connections_out_while_open_relays_flow(start_pair, tmp_path):
    mta, px = start_pair()
    port = px.port("px")
    with RawClient(port, timeout=5) as open_before:
        assert open_before.open_data() == 354
        fault(px, "hang", scope="new")
        late = RawClient(port, timeout=5)
        open_before.send(message("through").encode() + b"\r\n.\r\n")
        assert (open_before.reply() or (0,))[0] == 250
        assert open_before.command(b"MAIL FROM:<a@example.com>") == (250, b"2.1.0 Ok")
        px.control("px", "DELETE", "/faults?kind=hang")
        with late:
            assert none_answers(late), "a connection the door kept stays silent after"
    assert [r["msg_id"] for r in journal(tmp_path, "receipts-mta.csv")] == ["through"]
    assert mta_sessions(mta) == 1


def test_drop_cuts_the_client_after_the_dot_while_the_upstream_has_the_message(
    start_pair, tmp_path
):
    _mta, px = start_pair()
    with px.smtp("px") as client:
        assert client.sendmail(SENDER, RCPT, message("before")) == {}
        fault(px, "drop")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail(SENDER, RCPT, message("dropped"))
    assert wait_until(lambda: len(journal(tmp_path, "receipts-mta.csv")) == 2)
    receipts = journal(tmp_path, "receipts-mta.csv")
    assert [(r["msg_id"], r["outcome"]) for r in receipts] == [
        ("before", "accepted"), ("dropped", "accepted")
    ]  # fmt: skip
    assert wait_until(lambda: any(r["event"] == "close" for r in journal(tmp_path, "proxy-px.csv")))
    messages = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "message"]
    # The server said 250 to the dropped one; the client never heard it.
    assert [(m["msg_id"], m["code"], m["cause"]) for m in messages] == [
        ("before", "250", ""), ("dropped", "250", "drop")
    ]  # fmt: skip
    counters = px.control("px", "GET", "/status")[1]["counters"]
    assert (counters["accepted"], counters["dropped"], counters["cut"]) == (1, 1, 1)


def test_drop_finds_the_dot_across_reads_and_with_pipelining(start_pair, tmp_path):
    _mta, px = start_pair()
    fault(px, "drop")
    with RawClient(px.port("px")) as raw:
        assert raw.reply()[0] == 220
        assert raw.command(b"EHLO raw.test")[0] == 250
        raw.send(b"MAIL FROM:<news@example.com>\r\nRCPT TO:<a@gmail.test>\r\nDATA\r\n")
        assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
        for part in message("split").encode().split(b"\r\n"):
            raw.send(part + b"\r\n")
        raw.send(b".\r")  # the terminator in two writes
        time.sleep(0.1)
        assert journal(tmp_path, "receipts-mta.csv") == []  # not the end yet
        raw.send(b"\n")
        assert raw.closed_by_server()
    assert wait_until(lambda: len(journal(tmp_path, "receipts-mta.csv")) == 1)
    assert journal(tmp_path, "receipts-mta.csv")[0]["msg_id"] == "split"


def test_reset_at_connect_gives_the_client_a_connection_reset(start_pair, tmp_path):
    mta, px = start_pair()
    fault(px, "reset")
    # The RST may come before connect() returns, or at the first read.
    with (
        pytest.raises(ConnectionResetError),
        socket.create_connection(("127.0.0.1", px.port("px")), timeout=2) as sock,
    ):
        sock.recv(1024)
    with pytest.raises((ConnectionResetError, smtplib.SMTPServerDisconnected)) as caught:
        smtplib.SMTP("127.0.0.1", px.port("px"), timeout=2)
    error = caught.value  # smtplib wraps a reset at the first read
    assert isinstance(error, ConnectionResetError) or isinstance(
        error.__context__, ConnectionResetError
    )
    assert mta_sessions(mta) == 0

    def closes():
        return [r["cause"] for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "close"]

    assert wait_until(lambda: closes() == ["reset", "reset"])


def test_reset_at_the_dot_keeps_the_message_from_the_upstream(start_pair, tmp_path):
    _mta, px = start_pair()
    fault(px, "reset", stage="dot")
    with (
        px.smtp("px") as client,
        pytest.raises((ConnectionResetError, smtplib.SMTPServerDisconnected)),
    ):
        client.sendmail(SENDER, RCPT, message("never"))
    time.sleep(0.2)
    assert journal(tmp_path, "receipts-mta.csv") == []
    assert wait_until(
        lambda: any(r["event"] == "message" for r in journal(tmp_path, "proxy-px.csv"))
    )
    (row,) = [r for r in journal(tmp_path, "proxy-px.csv") if r["event"] == "message"]
    assert (row["msg_id"], row["code"], row["cause"]) == ("never", "", "reset")


def test_busy_answers_421_at_the_greeting_without_reaching_the_upstream(start_pair, tmp_path):
    mta, px = start_pair()
    fault(px, "busy")
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        smtplib.SMTP("127.0.0.1", px.port("px"), timeout=2)
    assert caught.value.smtp_code == 421
    assert caught.value.smtp_error.startswith(b"4.3.2")
    assert mta_sessions(mta) == 0


def _dot_timings(tmp_path, px, msg_id: str) -> tuple[float, float]:
    """(upstream receipt - dot sent, reply - upstream receipt) for one message, seconds."""
    with RawClient(px.port("px"), timeout=5) as raw:
        assert raw.open_data(b"news@example.com", b"a@gmail.test", b"raw.test") == 354
        sent = time.time()
        raw.send(message(msg_id).encode() + b".\r\n")
        assert raw.reply()[0] == 250
        replied = time.time()
    (receipt,) = [r for r in journal(tmp_path, "receipts-mta.csv") if r["msg_id"] == msg_id]
    received = float(receipt["time"])
    return received - sent, replied - received


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
def test_latency_delays_the_chosen_direction_only(start_pair, tmp_path, direction):
    _mta, px = start_pair()
    # A hop that was not delayed took less than the delay would have made it, with room
    # for a loaded machine; a delayed one took the delay, never less.
    to_server, to_client = _dot_timings(tmp_path, px, "plain")
    assert to_server < 0.15
    assert to_client < 0.15
    fault(px, "latency", ms=200, direction=direction)
    to_server, to_client = _dot_timings(tmp_path, px, "slow")
    slow, fast = (to_server, to_client) if direction == "upstream" else (to_client, to_server)
    assert 0.2 - 0.005 <= slow < 0.2 + LATE_S
    assert fast < 0.15


def test_latency_both_ways_adds_to_each_round_trip(start_pair, tmp_path):
    _mta, px = start_pair()
    with px.smtp("px") as client:
        client.ehlo()
        fault(px, "latency", ms=100, jitter_ms=10, direction="both")
        started = time.monotonic()
        assert client.noop()[0] == 250
        assert 0.18 <= time.monotonic() - started < 0.22 + LATE_S  # 2 x (100 +/- 10) ms


def test_bandwidth_slows_a_large_message_to_about_the_rate(start_pair, tmp_path):
    _mta, px = start_pair()
    body = ("x" * 998 + "\r\n") * 100  # 100 KB
    with px.smtp("px", timeout=20) as client:
        client.ehlo()
        started = time.monotonic()
        client.sendmail(SENDER, RCPT, message("fast", body=body))
        fast = time.monotonic() - started
        fault(px, "bandwidth", rate=100_000, direction="upstream")
        started = time.monotonic()
        client.sendmail(SENDER, RCPT, message("slow", body=body))
        slow = time.monotonic() - started
    assert fast < 0.5
    # 100 KB at 100 KB/s: never faster; a loaded loop may run each chunk's pace late.
    assert 0.8 <= slow < 1.0 + 2 * LATE_S


def test_link_effects_draw_their_probability_once_per_session(start_pair, tmp_path):
    _mta, px = start_pair()
    fault(px, "latency", ms=100, direction="both", probability=0.5)
    slow = []
    for _ in range(8):  # the proxy's seeded draws: some sessions slow, some not
        with px.smtp("px") as client:
            client.ehlo()
            times = []
            for _ in range(2):
                started = time.monotonic()
                client.noop()
                times.append(time.monotonic() - started)
        # One session: every round trip slow (200 ms, never less), or none.
        assert all(t >= 0.195 for t in times) or all(t < 0.195 for t in times), times
        slow.append(times[0] >= 0.195)
    assert 0 < sum(slow) < 8


# -- the control API and validation -------------------------------------------------------------


def test_the_control_api_knows_the_proxy_kinds_and_names_bad_fields(start_pair, tmp_path):
    mta, px = start_pair()
    status, kinds = px.control("px", "GET", "/kinds")
    assert status == 200
    assert {"reset", "bandwidth", "latency", "drop", "down", "hang", "busy"} <= set(kinds)
    assert "throttle" not in kinds
    assert set(kinds["latency"]["params"]["properties"]) == {"ms", "jitter_ms", "direction"}
    status, body = px.control(
        "px", "POST", "/faults", {"kind": "latency", "ms": 5, "direction": "up"}
    )
    assert status == 400
    assert body["error"].startswith("latency: direction:")
    status, body = px.control("px", "POST", "/faults", {"kind": "throttle", "rate": 1})
    assert status == 400
    assert "unknown kind 'throttle'" in body["error"]
    status, body = px.control("px", "POST", "/faults", {"kind": "bandwidth", "rate": 0})
    assert (status, body["error"]) == (400, "bandwidth: rate: Input should be greater than 0")
    assert mta.control("mta", "POST", "/faults", {"kind": "reset"})[0] == 400  # not a sink's


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ({"mode": "proxy"}, "mode proxy needs an upstream"),
        ({"mode": "proxy", "upstream": {"port": 25}, "processes": 2}, "processes: a proxy"),
        ({"mode": "proxy", "upstream": {"port": 25}, "starttls": True}, "starttls: a proxy"),
        ({"mode": "proxy", "upstream": {"port": 25, "starttls": True}}, "upstream.starttls"),
        ({"mode": "proxy", "upstream": {"port": 25},
          "faults": [{"kind": "latency", "at": 1, "ms": -1}]},
         "faults[0]: latency: ms: Input should be greater than or equal to 0"),
        ({"mode": "proxy", "upstream": {"port": 25},
          "behaviours": [{"kind": "greylist"}]}, "behaviours[0]: unknown kind 'greylist'"),
        ({"faults": [{"kind": "bandwidth", "at": 1, "rate": 5}]}, "unknown kind 'bandwidth'"),
        ({"mode": "proxy", "upstream": {"host": "192.0.2.1", "port": 25}},
         "upstream '192.0.2.1' is not loopback"),
        ({"mode": "proxy", "upstream": {"port": 25},
          "faults": [{"kind": "reset", "at": 1, "stage": "ack"}]},
         "reset: stage: a proxy cannot see when the server commits a message"),
    ],
)  # fmt: skip
def test_proxy_configs_that_cannot_run_say_which_field(sink, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"sinks": [{"name": "px", **sink}]})
    assert problem in str(caught.value)


def test_a_remote_upstream_is_allowed_with_allow_remote():
    remote = {"name": "px", "mode": "proxy", "upstream": {"host": "192.0.2.1", "port": 25}}
    config = parse_config({"allow_remote": True, "sinks": [remote]})
    assert config.sinks[0].upstream.host == "192.0.2.1"


SCENARIO = {
    "servers": [
        {"name": "primary", "local": True, "sink": {"mode": "proxy", "upstream": "real"}},
        {"name": "real", "host": "127.0.0.1", "port": 2525},
        {"name": "secondary", "local": True, "priority": 20},
    ],
    "routing": {"servers": ["primary", "secondary"]},
    "campaign": {"schedule": [{"duration_s": 10, "rate": 1}]},
}


def test_a_scenario_puts_faults_on_a_proxy_in_front_of_a_server_it_does_not_own():
    faults = [{"at": 1, "target": "primary", "kind": "latency", "ms": 50, "direction": "upstream"},
              {"at": 2, "target": "primary", "kind": "reset", "stage": "mail"}]  # fmt: skip
    scenario = parse_scenario({**SCENARIO, "faults": faults})
    proxy = scenario.server("primary")
    assert proxy.upstream_name == "real"
    config = proxy.sink_config({"real": ("127.0.0.1", 2525)})
    assert (config.mode, config.upstream.port) == ("proxy", 2525)
    assert scenario.ordered_servers() == ["primary", "secondary"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"faults": [{"at": 1, "target": "real", "kind": "down"}]},
         "'real' is not a maildrill sink"),
        ({"faults": [{"at": 1, "target": "primary", "kind": "throttle", "rate": 5}]},
         "faults[0].kind: unknown 'throttle'"),
        ({"faults": [{"at": 1, "target": "secondary", "kind": "bandwidth", "rate": 5}]},
         "faults[0].kind: unknown 'bandwidth'"),
        ({"faults": [{"at": 1, "target": "primary", "kind": "latency", "ms": 5, "direction": "x"}]},
         "faults[0] (latency): direction:"),
        ({"servers": [{"name": "primary", "local": True,
                       "sink": {"mode": "proxy", "upstream": {"host": "192.0.2.7", "port": 25}}},
                      {"name": "secondary", "local": True}]},
         "sink.upstream 192.0.2.7 is outside loopback"),
    ],
)  # fmt: skip
def test_scenario_proxy_mistakes_are_named(change, problem):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({**SCENARIO, **change})
    assert problem in str(caught.value)


# -- following SMTP from outside (pure) ------------------------------------------------------------


def _events(pieces):
    return [event for _, event in pieces if event is not None]


def test_watch_matches_pipelined_replies_and_finds_the_message_id():
    watch = SmtpWatch()
    (greeting,) = _events(watch.server(b"220 mx ESMTP\r\n"))
    assert greeting.answers.stage is Stage.CONNECT
    pieces = watch.client(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert (
        b"".join(p for p, _ in pieces) == b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    )
    assert [e.stage for e in _events(pieces)] == [Stage.EHLO, Stage.MAIL, Stage.RCPT, Stage.DATA]
    replies = _events(watch.server(b"250-mx\r\n250 SIZE 10\r\n250 ok\r\n250 ok\r\n354 go\r\n"))
    assert [(r.code, r.answers.verb) for r in replies] == [
        (250, "EHLO"), (250, "MAIL"), (250, "RCPT"), (354, "DATA")
    ]  # fmt: skip
    content = b"X-Maildrill-Id: m-1\r\nSubject: s\r\n\r\nbody\r\n..stuffed\r\n"
    first = watch.client(content[:10])
    assert _events(first) == []
    rest = watch.client(content[10:] + b".\r\nQUIT\r\n")
    events = _events(rest)
    assert isinstance(events[0], Message)
    assert (events[0].msg_id, events[0].size) == ("m-1", len(content))
    assert events[1] == Command("QUIT", None)
    (verdict,) = _events(watch.server(b"250 2.0.0 queued\r\n"))
    assert verdict == ServerReply(250, events[0])


def test_watch_handles_refused_data_bdat_and_starttls():
    watch = SmtpWatch()
    watch.server(b"220 mx\r\n")
    watch.client(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    watch.server(b"250 ok\r\n550 no\r\n554 no valid recipients\r\n")
    assert watch.mode == "command"  # no 354: what follows are commands again
    assert _events(watch.client(b"RSET\r\n"))[0].verb == "RSET"
    watch.server(b"250 ok\r\n")
    # BDAT: the chunk is counted out, not searched for a dot; the LAST reply is the verdict.
    chunk = b"X-Maildrill-Id: b-2\r\n\r\n.\r\n"
    pieces = watch.client(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    events = _events(pieces)
    assert events[0].verb == "BDAT"
    assert (events[1].msg_id, events[1].size) == ("b-2", len(chunk))
    assert events[2].verb == "NOOP"
    verdict, noop = _events(watch.server(b"250 ok\r\n250 ok\r\n"))
    assert verdict.answers is events[1]
    assert noop.answers.verb == "NOOP"
    watch.client(b"STARTTLS\r\n")
    watch.server(b"220 go ahead\r\n")
    assert watch.opaque
    assert watch.client(b"\x16\x03\x01binary\r\nDATA\r\n") == [
        (b"\x16\x03\x01binary\r\nDATA\r\n", None)
    ]


def test_watch_finds_an_empty_message_and_a_terminator_split_anywhere():
    content = b"X-Maildrill-Id: s\r\n\r\nline\r\n.\r\n"
    for cut in range(1, len(content)):
        watch = SmtpWatch()
        watch.server(b"220 mx\r\n")
        watch.client(b"DATA\r\n")
        watch.server(b"354 go\r\n")
        events = _events(watch.client(content[:cut])) + _events(watch.client(content[cut:]))
        assert len(events) == 1, cut
        assert events[0].msg_id == "s"
    watch = SmtpWatch()
    watch.server(b"220 mx\r\n")
    watch.client(b"DATA\r\n")
    watch.server(b"354 go\r\n")
    (empty,) = _events(watch.client(b".\r\n"))
    assert (empty.msg_id, empty.size) == ("", 0)


def test_watch_is_not_ready_while_its_commands_wait_for_replies():
    watch = SmtpWatch()
    watch.server(b"220 mx\r\n")
    pieces = watch.pieces(b"NOOP\r\n" * (MAX_UNANSWERED + 5))
    taken = 0
    for _ in pieces:
        taken += 1
        if not watch.ready:
            break
    assert taken == MAX_UNANSWERED  # one record per unanswered command, no more
    watch.server(b"250 ok\r\n")
    assert watch.ready
    assert len(list(pieces)) == 5  # read on where it stopped
    watch.server(b"250 ok\r\n" * (MAX_UNANSWERED + 4))
    assert not watch.pending
    # After DATA nothing is read until its reply says whether content or commands follow.
    pieces = watch.pieces(b"DATA\r\nX-Maildrill-Id: early\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert _events([next(pieces)])[0].verb == "DATA"
    assert not watch.ready
    watch.server(b"354 go\r\n")
    assert watch.ready
    message, quit_ = _events(pieces)
    assert (message.msg_id, quit_.verb) == ("early", "QUIT")
    watch.server(b"250 ok\r\n221 bye\r\n")
    # A BDAT chunk is read before its reply (the server answers once it has the chunk).
    pieces = watch.pieces(b"BDAT 3 LAST\r\nabc")
    assert _events([next(pieces)])[0].verb == "BDAT"
    assert watch.ready
    (chunk,) = _events(pieces)
    assert chunk.size == 3
    # STARTTLS too: the bytes after it are TLS or commands, as its reply says.
    pieces = watch.pieces(b"STARTTLS\r\n\x16\x03\x01hello\r\n")
    next(pieces)
    watch.server(b"250 ok\r\n")
    assert not watch.ready
    watch.server(b"220 go ahead\r\n")
    assert list(pieces) == [(b"\x16\x03\x01hello\r\n", None)]


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_proxy_primary_drill_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "proxy-primary", "--out", str(run_dir),
         "--set", "campaign.schedule.0.duration_s=9", "--set", "campaign.drain_s=3",
         "--set", "faults.0.at=2", "--set", "faults.0.duration=2",
         "--set", "faults.1.at=6", "--set", "faults.1.duration=1.5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["messages"]
    assert m["planned"] == 360
    assert m["lost"] == m["duplicates"] == 0
    down, drop = summary["failovers"]
    assert (down["target"], down["kind"], drop["target"], drop["kind"]) == (
        "primary", "down", "primary", "drop"
    )  # fmt: skip
    assert down["onset_s"] == pytest.approx(2.0, abs=0.3)
    assert drop["onset_s"] == pytest.approx(6.0, abs=0.3)
    for failover in (down, drop):
        assert 0 <= failover["failover_s"] < 3
        assert failover["detection_s"] is not None
        assert failover["failback_s"] is not None

    # Independently, from the journals: the sinks' receipts, the proxy's own journal.
    attempts = read_csv(run_dir / "attempts.csv")
    at_mta = read_csv(run_dir / "receipts-primary-mta.csv")
    at_secondary = read_csv(run_dir / "receipts-secondary.csv")
    received = Counter(r["msg_id"] for r in at_mta + at_secondary)
    accepted = {a["msg_id"] for a in attempts if a["outcome"] == "accepted"}
    assert m["received_unique"] == len(received)
    assert m["accepted"] == len(accepted)
    assert accepted <= set(received)
    failed = {a["msg_id"] for a in attempts if a["final"] == "1" and a["outcome"] != "accepted"}
    assert m["phantom"] == len(failed & set(received))
    proxied = [r for r in read_csv(run_dir / "proxy-primary.csv") if r["event"] == "message"]
    passed = [r["msg_id"] for r in proxied if r["code"] == "250" and not r["cause"]]
    cut = {r["msg_id"] for r in proxied if r["cause"]}
    via_primary = [a["msg_id"] for a in attempts
                   if a["server"] == "primary" and a["outcome"] == "accepted"]  # fmt: skip
    assert sorted(passed) == sorted(via_primary)
    assert summary["throughput"]["per_server"]["primary"]["accepted"] == len(via_primary)
    # Everything the real primary got came through the proxy (probes send no mail); what
    # the proxy saw it accept, it has; what a fault cut, the client never heard accepted.
    assert {r["msg_id"] for r in at_mta} <= {r["msg_id"] for r in proxied}
    assert {r["msg_id"] for r in proxied if r["code"] == "250"} <= {r["msg_id"] for r in at_mta}
    dropped = {r["msg_id"] for r in proxied if r["cause"] == "drop"}
    assert dropped
    assert dropped <= failed
    assert cut.isdisjoint(accepted)
    faults = read_csv(run_dir / "faults-primary.csv")
    assert [(f["kind"], f["state"]) for f in faults] == [
        ("down", "start"), ("down", "stop"), ("drop", "start"), ("drop", "stop")
    ]  # fmt: skip
    # The summary's proxy section against the upstream sink's receipts and the attempts.
    seen = summary["proxies"]["primary"]
    assert seen["upstream"] == "primary-mta"
    # (down may cut a session after the upstream kept a message, before its 250 came back)
    assert seen["server_replies"]["2xx"] <= len(at_mta)
    assert seen["accepted_then_cut"] == len(dropped & {r["msg_id"] for r in at_mta})
    assert seen["cut_by_fault"]["drop"] == sum(1 for r in proxied if r["cause"] == "drop")
    # Every client cut after its dot was cut by the proxy (drop, or down cutting open
    # sessions; a session down cuts before the dot has no message to show). A dot the
    # client had written but the proxy had not yet read when down cut its session leaves
    # no message either: such a cut ends within a moment of down's start.
    down_at = next(float(f["time"]) for f in faults if f["kind"] == "down")
    for a in attempts:
        if a["server"] == "primary" and a["outcome"] == "dropped" and a["phase"] == "dot":
            assert a["msg_id"] in cut or abs(float(a["end"]) - down_at) < 1.0, a
    # Bytes each way, bounded by what the two ends journaled: every message the upstream
    # kept crossed the proxy whole; the client read at least a banner per session.
    assert seen["bytes_up"] >= sum(int(r["size"]) for r in at_mta)
    assert seen["bytes_down"] >= 4 * seen["sessions_ended_by"].get("server", 0)
    assert "| primary | primary-mta |" in (run_dir / "report.md").read_text()


def test_servers_maildrill_does_not_own_are_witnessed_through_a_proxy_or_unverified(
    start_sinks, tmp_path
):
    """Two "staging" servers outside the run (sinks started here, journaling where the run
    cannot see): the primary behind a proxy with a drop, the secondary reached directly.
    The run counts the primary's mail from the proxy's witness and calls the secondary's
    unverified; both agree with the staging servers' own receipts."""
    import yaml

    outside = tmp_path / "staging"
    staging = start_sinks({"sinks": [{"name": "mx1"}, {"name": "mx2"}]}, journal_dir=outside)
    scenario = {
        "name": "staging",
        "servers": [
            {"name": "edge", "priority": 10, "local": True,
             "sink": {"mode": "proxy", "upstream": "mx1"}},
            {"name": "mx1", "port": staging.port("mx1")},
            {"name": "mx2", "port": staging.port("mx2"), "priority": 20},
        ],
        "routing": {"policy": "failover", "servers": ["edge", "mx2"],
                    "circuit": {"threshold": 1, "cooldown_s": 1}},
        "campaign": {"seed": 3, "schedule": [{"duration_s": 4, "rate": 10}], "drain_s": 2},
        "users": 4,
        # busy (421 at the greeting) sends mail to mx2 without cutting a session midway,
        # so every 250 of mx1 goes through the proxy to be seen.
        "faults": [{"at": 1, "target": "edge", "kind": "drop", "duration": 0.5},
                   {"at": 2, "target": "edge", "kind": "busy", "duration": 1}],
        "slo": ["lost == 0"],
    }  # fmt: skip
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", str(path), "--out", str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    m = json.loads((run_dir / "summary.json").read_text())["messages"]
    attempts = read_csv(run_dir / "attempts.csv")
    at_mx1 = {r["msg_id"] for r in read_csv(outside / "receipts-mx1.csv")}
    at_mx2 = {r["msg_id"] for r in read_csv(outside / "receipts-mx2.csv")}
    accepted = {a["msg_id"]: a["server"] for a in attempts if a["outcome"] == "accepted"}
    failed = {a["msg_id"] for a in attempts if a["final"] == "1" and a["outcome"] != "accepted"}
    via_mx2 = {mid for mid, server in accepted.items() if server == "mx2"}
    assert via_mx2, "the drop and the outage sent mail to the secondary"
    assert failed & at_mx1, "the drop cut some clients after mx1 had the message"
    # What the run could see (through the proxy) against mx1's own receipts; mx2's mail
    # is unverified, not lost, and mx2's receipts show it was in fact delivered.
    assert m["received_unique"] == len(at_mx1)
    assert m["phantom"] == len(failed & at_mx1)
    assert m["unverified"] == len(via_mx2 - at_mx1) == len(at_mx2 - at_mx1)
    assert m["lost"] == 0


# -- memory: back-pressure both ways ------------------------------------------------------------

FLOOD_BYTES = 16_000_000  # far more than every buffer on the path together, kernel included
STALLED_S = 1.0  # sending has made no progress this long: the proxy pushes back
GROWTH_KB = 20_000  # the proxy's resident set may grow this much; on a proxy that
# buffers without bound, 12 MB of pipelined NOOPs grew it by 130 MB.


@dataclass
class Flood:
    """What a client that never reads got into the proxy, and what it cost the proxy."""

    sent: int  # bytes the client got into its socket
    stalled: bool  # the proxy took nothing for STALLED_S at the end
    rss_kb: int  # the proxy's growth with the client still connected (every buffer full)
    peak_kb: int  # and its peak growth


def _unsent(conn: socket.socket) -> int:
    """Bytes in the socket's send queue the peer has not taken (Linux SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def _flood(px: SinkProcess, unit: bytes, deadline_s: float = 12.0) -> Flood:
    """Pipeline `unit` over and over without reading a reply, until the proxy has taken
    nothing for STALLED_S (neither a send nor the send queue moved), FLOOD_BYTES are sent
    or the deadline passes."""
    before = px.memory_kb("VmRSS")
    chunk = unit * (65536 // len(unit))
    sent, at = 0, 0
    with socket.socket() as conn:
        # A client that never reads soon advertises a small window (RFC 9293 3.8.6).
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.connect(("127.0.0.1", px.port))
        conn.setblocking(False)
        end = time.monotonic() + deadline_s
        progress, unsent = time.monotonic(), 0
        while sent < FLOOD_BYTES and time.monotonic() < end:
            if select.select([], [conn], [], 0.1)[1]:
                with contextlib.suppress(BlockingIOError):
                    done = conn.send(chunk[at:])
                    sent += done
                    at = (at + done) % len(chunk)
                    progress = time.monotonic()
            if (now_unsent := _unsent(conn)) < unsent:
                progress = time.monotonic()
            unsent = now_unsent
            if time.monotonic() - progress >= STALLED_S:
                break
        stalled = time.monotonic() - progress >= STALLED_S
        grown = px.memory_kb("VmRSS") - before  # every buffer on the path still full
    peak = px.memory_kb("VmHWM") - before  # an upper bound: the start may have peaked higher
    return Flood(sent, stalled, grown, peak)


@pytest.fixture
def proxy_before(tmp_path):
    """proxy_before(upstream) -> the proxy 'px' in front of a server started from the
    config `upstream`; each in its own process, so the proxy's RSS is its own."""
    started: list[SinkProcess] = []

    def start(upstream: dict, behaviours: list[dict]) -> SinkProcess:
        for name in ("up", "px"):
            (tmp_path / name).mkdir()
        started.append(SinkProcess(upstream, tmp_path / "up"))
        config = {"name": "px", "mode": "proxy", "upstream": {"port": started[0].port},
                  "behaviours": behaviours}  # fmt: skip
        started.append(SinkProcess(config, tmp_path / "px"))
        return started[1]

    yield start
    assert [server.stop() for server in reversed(started)] == [0] * len(started)


# A server that reads every byte and never says a word (a proxy that hangs up front).
BLACK_HOLE = {"name": "hole", "mode": "proxy", "upstream": {"port": 9},
              "behaviours": [{"kind": "hang"}]}  # fmt: skip
LINK_LATENCY = {"kind": "latency", "ms": 20, "direction": "both"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("upstream", "unit", "behaviours"),
    [
        # Commands flood up and nothing answers them.
        (BLACK_HOLE, b"HELO c.test\r\n", []),
        # Replies ten times the commands flood down, each chunk held on the way (delay lines).
        ({"name": "mta"}, b"EHLO flood.test\r\n", [LINK_LATENCY]),
    ],
    ids=["commands", "replies"],
)
def test_a_client_that_never_reads_meets_back_pressure_and_the_proxy_stays_small(
    proxy_before, upstream, unit, behaviours
):
    px = proxy_before(upstream, behaviours)
    flood = _flood(px, unit)
    print(f"{unit!r}: {flood}")
    assert flood.stalled, flood  # the client is held back, not swallowed
    assert flood.sent < FLOOD_BYTES, flood
    assert flood.rss_kb < GROWTH_KB, flood
    assert flood.peak_kb < GROWTH_KB, flood
