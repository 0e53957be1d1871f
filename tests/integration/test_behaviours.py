"""Steady behaviours give the replies real MTAs give, at the stage they give them."""

from __future__ import annotations

import itertools
import smtplib
import statistics
import time

import pytest

from tests.helpers import LATE_S, RawClient, message, read_csv, wait_until


def attempt(
    port: int, rcpt: str = "user@example.com", source: str = "127.0.0.1", msg_id: str = "m"
) -> tuple[str, int, bytes, bool]:
    """One message on a fresh connection from `source`.

    Returns (stage, code, text, closed): the first refusal and its stage, or ("dot", 250, …)
    when accepted; `closed` tells whether the server hung up after that reply.
    """
    with smtplib.SMTP("127.0.0.1", port, timeout=5, source_address=(source, 0)) as client:
        client.ehlo()
        stage, (code, text) = "mail", client.mail("sender@example.com")
        if code < 400:
            stage, (code, text) = "rcpt", client.rcpt(rcpt)
        if code < 400:
            stage, (code, text) = "dot", client.data(message(msg_id))
        try:
            client.noop()
        except smtplib.SMTPServerDisconnected:
            return stage, code, text, True
        return stage, code, text, False


def refusals(sinks, name: str = "mx") -> list[tuple[str, str, str]]:
    rows = read_csv(sinks.journal_dir / f"refusals-{name}.csv")
    return [(r["stage"], r["code"], r["enhanced"]) for r in rows]


def receipts(sinks, name: str = "mx") -> list[dict[str, str]]:
    return read_csv(sinks.journal_dir / f"receipts-{name}.csv")


# -- throttle ---------------------------------------------------------------------------

PRESETS = [
    ("gmail", 421, b"4.7.28", b"UnsolicitedRateLimitError"),
    ("yahoo", 421, b"4.7.0", b"[TSS04] Messages from 127.0.0.1"),
    ("outlook", 451, b"4.7.650", b"[127.0.0.1] has been temporarily rate limited"),
    ("postfix", 450, b"4.7.1", b"too much mail from 127.0.0.1"),
]


@pytest.mark.parametrize("per", ["sink", "client", "domain"])
@pytest.mark.parametrize(("preset", "code", "enhanced", "marker"), PRESETS)
def test_throttle_preset_replies_per_key(start_sinks, per, preset, code, enhanced, marker):
    throttle = {"kind": "throttle", "rate": 0.001, "per": per, "preset": preset}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [throttle]}]})
    port = sinks.port("mx")
    stage = "rcpt" if per == "domain" else "mail"

    assert attempt(port, "a@gmail.test")[:2] == ("dot", 250)
    refused = attempt(port, "b@gmail.test")
    assert refused[:2] == (stage, code)
    assert refused[2].startswith(enhanced + b" ")
    assert marker in refused[2]
    assert refused[3] is (code == 421), "421 closes the connection, other codes do not"

    # Another key: another client for per=client, another domain for per=domain;
    # per=sink shares one bucket, so both differences together are still refused.
    other_source = "127.0.0.1" if per == "domain" else "127.0.0.2"
    other_rcpt = "c@gmail.test" if per == "client" else "c@yahoo.test"
    other = attempt(port, other_rcpt, source=other_source)
    if per == "sink":
        assert other[:2] == (stage, code)
    else:
        assert other[:2] == ("dot", 250)

    refused_count = 2 if per == "sink" else 1
    assert refusals(sinks) == [(stage, str(code), enhanced.decode())] * refused_count
    assert len(receipts(sinks)) == 3 - refused_count


def test_throttle_custom_reply_fills_in_the_peer(start_sinks):
    throttle = {"kind": "throttle", "rate": 0.001, "reply": "451 4.7.1 slow down, [{peer}]"}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [throttle]}]})
    port = sinks.port("mx")
    assert attempt(port)[:2] == ("dot", 250)
    assert attempt(port, source="127.0.0.3") == (
        "mail",
        451,
        b"4.7.1 slow down, [127.0.0.3]",
        False,
    )


def test_throttle_per_domain_at_dot_refuses_the_whole_message(start_sinks):
    throttle = {"kind": "throttle", "rate": 0.001, "per": "domain", "stage": "dot"}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [throttle]}]})
    port = sinks.port("mx")
    assert attempt(port, "a@gmail.test")[:2] == ("dot", 250)
    assert attempt(port, "b@gmail.test")[:2] == ("dot", 450)
    assert attempt(port, "b@yahoo.test")[:2] == ("dot", 250)
    assert [r["outcome"] for r in receipts(sinks)] == ["accepted", "accepted"]


def test_token_bucket_refills_at_its_rate(start_sinks):
    """Accepted MAILs over a window = burst + rate x elapsed, within a small tolerance."""
    rate, burst, window = 20.0, 3, 1.0
    throttle = {"kind": "throttle", "rate": rate, "burst": burst, "preset": "postfix"}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [throttle]}]})
    accepted_at: list[float] = []
    refused = 0
    with sinks.smtp("mx") as client:
        client.ehlo()
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < window:
            code, _ = client.mail("sender@example.com")
            if code == 250:
                accepted_at.append(now - start)
                client.rset()
            else:
                assert code == 450
                refused += 1
                time.sleep(0.002)
    elapsed = time.perf_counter() - start
    expected = burst + rate * elapsed
    assert expected - 2 <= len(accepted_at) <= expected + 1
    assert refused > 0
    # After the burst is spent, grants come at the refill rate: about 1/rate apart.
    gaps = [b - a for a, b in itertools.pairwise(accepted_at[burst:])]
    assert statistics.median(gaps) == pytest.approx(1 / rate, abs=0.02)
    assert sinks.sink("mx").counters.deferred == refused


# -- caps -------------------------------------------------------------------------------


def test_connection_cap_refuses_with_421_and_closes(start_sinks):
    sinks = start_sinks(
        {"sinks": [{"name": "mx", "behaviours": [{"kind": "connection_cap", "max": 2}]}]}
    )
    port = sinks.port("mx")
    first, second = sinks.smtp("mx"), sinks.smtp("mx")
    with RawClient(port) as third:
        code, text = third.reply()
        assert (code, text[:6]) == (421, b"4.7.0 ")
        assert third.closed_by_server()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        sinks.smtp("mx")
    assert refused.value.smtp_code == 421
    first.quit()
    # The slot frees once the first session has ended on the server side.
    assert wait_until(lambda: sinks.sink("mx").counters.active_sessions == 1)
    with sinks.smtp("mx") as again:
        assert again.noop()[0] == 250
    second.quit()
    assert refusals(sinks) == [("connect", "421", "4.7.0")] * 2
    counters = sinks.sink("mx").counters
    assert counters.sessions == 5
    assert wait_until(lambda: counters.active_sessions == 0)


def test_message_cap_gives_421_at_next_mail_and_closes(start_sinks):
    sinks = start_sinks(
        {"sinks": [{"name": "mx", "behaviours": [{"kind": "message_cap", "max": 2}]}]}
    )
    with sinks.smtp("mx") as client:
        for i in range(2):
            client.sendmail("a@example.com", ["b@example.com"], message(f"m{i}"))
        code, text = client.mail("a@example.com")
        assert (code, text[:6]) == (421, b"4.7.0 ")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    # A new connection starts a new count.
    with sinks.smtp("mx") as client:
        client.sendmail("a@example.com", ["b@example.com"], message("m2"))
    assert [r["msg_id"] for r in receipts(sinks)] == ["m0", "m1", "m2"]
    assert refusals(sinks) == [("mail", "421", "4.7.0")]


def test_recipient_cap_refuses_extra_recipients_with_452(start_sinks):
    sinks = start_sinks(
        {"sinks": [{"name": "mx", "behaviours": [{"kind": "recipient_cap", "max": 2}]}]}
    )
    rcpts = [f"r{i}@example.com" for i in range(4)]
    with sinks.smtp("mx") as client:
        refused = client.sendmail("a@example.com", rcpts, message("m"))
    assert set(refused) == set(rcpts[2:])
    assert all(code == 452 and text.startswith(b"4.5.3 ") for code, text in refused.values())
    (row,) = receipts(sinks)
    assert row["rcpt_count"] == "2"
    assert refusals(sinks) == [("rcpt", "452", "4.5.3")] * 2


def test_size_limit_boundary_is_exact(start_sinks):
    """A message of exactly size_limit bytes passes; one byte more is refused after the dot."""
    limit = 1000
    sinks = start_sinks({"sinks": [{"name": "mx", "size_limit": limit}]})
    head = message("fit", body="")
    fits = head + "x" * (limit - len(head) - 2) + "\r\n"
    assert len(fits) == limit
    over = fits.replace("fit", "big", 2).replace("xx\r\n", "xxx\r\n")
    assert len(over) == limit + 1
    with sinks.smtp("mx") as client:
        client.ehlo()
        for text in (fits, over):
            client.mail("a@example.com")
            client.rcpt("b@example.com")
            client.send(b"DATA\r\n")
            assert client.getreply()[0] == 354
            client.send(text.encode() + b".\r\n")
            code, reply = client.getreply()
            assert code == (250 if text is fits else 552), reply
    (row,) = receipts(sinks)
    assert (row["msg_id"], int(row["size"])) == ("fit", limit)


def test_size_limit_zero_means_unlimited(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "size_limit": 0}]})
    big = message("big", body="y" * 998 + "\r\n") * 1
    big += ("z" * 998 + "\r\n") * 200
    with sinks.smtp("mx") as client:
        client.ehlo()
        assert "size" not in client.esmtp_features
        client.sendmail("a@example.com", ["b@example.com"], big)
    (row,) = receipts(sinks)
    assert int(row["size"]) == len(big)


# -- greylist ---------------------------------------------------------------------------


def test_greylist_defers_first_try_and_accepts_after_delay(start_sinks):
    delay = 0.4
    sinks = start_sinks(
        {"sinks": [{"name": "mx", "behaviours": [{"kind": "greylist", "delay_s": delay}]}]}
    )
    port = sinks.port("mx")
    start = time.perf_counter()
    first = attempt(port, "r@example.com")
    assert first[:2] == ("rcpt", 450)
    assert first[2].startswith(b"4.2.0 ")
    assert attempt(port, "r@example.com")[:2] == ("rcpt", 450), "retried too early"
    # Each element of the triplet counts: another recipient or client starts over.
    assert attempt(port, "s@example.com")[:2] == ("rcpt", 450)
    assert attempt(port, "r@example.com", source="127.0.0.2")[:2] == ("rcpt", 450)
    time.sleep(max(0.0, delay - (time.perf_counter() - start)) + 0.02)
    assert attempt(port, "r@example.com")[:2] == ("dot", 250)
    assert attempt(port, "R@Example.com")[:2] == ("dot", 250), "addresses compare caselessly"
    assert refusals(sinks) == [("rcpt", "450", "4.2.0")] * 4
    assert len(receipts(sinks)) == 2


def test_greylist_forgets_triplets_not_retried_within_expire_s(start_sinks):
    greylist = {"kind": "greylist", "delay_s": 0.1, "expire_s": 0.3}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [greylist]}]})
    port = sinks.port("mx")
    assert attempt(port, "r@example.com")[:2] == ("rcpt", 450)
    time.sleep(0.4)
    assert attempt(port, "r@example.com")[:2] == ("rcpt", 450), "expired: a first try again"
    time.sleep(0.15)
    assert attempt(port, "r@example.com")[:2] == ("dot", 250)


# -- latency ----------------------------------------------------------------------------


def _timed_session(port: int) -> dict[str, float]:
    """Seconds each step of one transaction took, measured by the client."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    client = smtplib.SMTP("127.0.0.1", port, timeout=5)
    times["connect"] = time.perf_counter() - t
    try:
        for stage, step in (
            ("ehlo", lambda: client.ehlo()),
            ("mail", lambda: client.mail("a@example.com")),
            ("rcpt", lambda: client.rcpt("b@example.com")),
            ("data", lambda: client.docmd("DATA")),
            ("dot", lambda: client.send(message("lat").encode() + b".\r\n") or client.getreply()),
        ):
            t = time.perf_counter()
            code, _ = step()
            times[stage] = time.perf_counter() - t
            assert code < 400
    finally:
        client.quit()
    return times


@pytest.mark.parametrize("stage", ["connect", "ehlo", "mail", "rcpt", "data", "dot"])
def test_latency_delays_only_its_stage(start_sinks, stage):
    latency = {"kind": "latency", "ms": 150, "stages": [stage]}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [latency]}]})
    times = _timed_session(sinks.port("mx"))
    assert 0.145 <= times[stage] < 0.15 + LATE_S
    # Any other stage answered faster than the delay would have let it.
    assert all(v < 0.145 for k, v in times.items() if k != stage), times


def test_latency_jitter_stays_in_its_band(start_sinks):
    latency = {"kind": "latency", "ms": 150, "jitter_ms": 40}
    sinks = start_sinks({"sinks": [{"name": "mx", "seed": 3, "behaviours": [latency]}]})
    samples = []
    with sinks.smtp("mx") as client:
        client.ehlo()
        for i in range(8):
            assert client.mail("a@example.com")[0] == 250
            assert client.rcpt("b@example.com")[0] == 250
            t = time.perf_counter()
            code, _ = client.data(message(f"j{i}"))
            samples.append(time.perf_counter() - t)
            assert code == 250
    # 150 +/- 40 ms, never less; more only by what a loaded machine adds.
    assert all(0.108 <= s < 0.190 + LATE_S for s in samples), samples
    assert 0.115 <= statistics.mean(samples) < 0.185 + LATE_S
    assert max(samples) - min(samples) > 0.01, "jitter should spread the delays"


# -- reject -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "code", "enhanced"),
    [
        ("connect", 554, "5.7.1"),
        ("ehlo", 550, "5.7.1"),
        ("mail", 553, "5.7.1"),
        ("rcpt", 550, "5.1.1"),
        ("data", 451, "4.3.0"),
        ("dot", 554, "5.7.1"),
    ],
)
def test_reject_at_each_stage(start_sinks, stage, code, enhanced):
    reject = {"kind": "reject", "stage": stage, "code": code, "enhanced": enhanced, "text": "no"}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [reject]}]})
    expected = (code, f"{enhanced} no".encode())
    if stage == "connect":
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            sinks.smtp("mx")
        assert (refused.value.smtp_code, refused.value.smtp_error) == expected
    else:
        with sinks.smtp("mx") as client:
            steps = {
                "ehlo": lambda: client.ehlo(),
                "mail": lambda: client.mail("a@example.com"),
                "rcpt": lambda: client.rcpt("b@example.com"),
                "data": lambda: client.docmd("DATA"),
                "dot": lambda: client.send(message("r").encode() + b".\r\n") or client.getreply(),
            }
            for name, step in steps.items():
                reply = step()
                if name == stage:
                    assert reply == expected
                    break
                assert reply[0] < 400, (name, reply)
            if stage == "ehlo":
                # Refused EHLO leaves the session without a greeting: MAIL is out of order.
                assert client.mail("a@example.com")[0] == 503
            else:
                assert client.noop()[0] == 250, "the session goes on after a refusal"
    assert refusals(sinks)[0] == (stage, str(code), enhanced)
    assert receipts(sinks) == []


def _reject_pattern(start_sinks, tmp_path, label: str, seed: int, n: int = 40) -> list[bool]:
    reject = {"kind": "reject", "stage": "mail", "code": 450, "probability": 0.3}
    config = {"seed": seed, "sinks": [{"name": "mx", "behaviours": [reject]}]}
    sinks = start_sinks(config, journal_dir=tmp_path / label)
    pattern = []
    with sinks.smtp("mx") as client:
        client.ehlo()
        for _ in range(n):
            code, _ = client.mail("a@example.com")
            pattern.append(code == 450)
            if code == 250:
                client.rset()
    assert sinks.sink("mx").counters.deferred == sum(pattern)
    return pattern


def test_reject_probability_repeats_with_the_seed(start_sinks, tmp_path):
    first = _reject_pattern(start_sinks, tmp_path, "a", seed=7)
    again = _reject_pattern(start_sinks, tmp_path, "b", seed=7)
    other = _reject_pattern(start_sinks, tmp_path, "c", seed=8)
    assert first == again
    assert first != other
    assert 4 <= sum(first) <= 22  # about 30% of 40
    assert 4 <= sum(other) <= 22


def test_sink_seed_overrides_the_file_seed(start_sinks, tmp_path):
    reject = {"kind": "reject", "stage": "rcpt", "code": 550, "probability": 0.5}

    def pattern(label: str, file_seed: int) -> list[int]:
        sink = {"name": "mx", "seed": 99, "behaviours": [reject]}
        sinks = start_sinks({"seed": file_seed, "sinks": [sink]}, journal_dir=tmp_path / label)
        with sinks.smtp("mx") as client:
            client.ehlo()
            client.mail("a@example.com")
            return [client.rcpt(f"r{i}@example.com")[0] for i in range(20)]

    assert pattern("a", 1) == pattern("b", 2)


# -- the ack stage: the message is journaled, then the reply is slow or wrong -----------


def test_latency_at_ack_journals_the_message_before_the_slow_250(start_sinks):
    slow_ack = {"kind": "latency", "ms": 600, "stages": ["ack"]}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [slow_ack]}]})
    port = sinks.port("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.ehlo("relay.example.test")
        client.mail("sender@example.com")
        client.rcpt("user@example.com")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        sent = time.monotonic()
        client.send(message("acked-late").encode() + b".\r\n")
        assert client.getreply()[0] == 250
        replied = time.time()
        assert time.monotonic() - sent >= 0.6
    (row,) = receipts(sinks)
    # The sink had the message 0.6 s before the 250 came: a sender cut off then retries it.
    assert float(row["time"]) <= replied - 0.6 + 0.002
    assert (row["msg_id"], row["outcome"], row["helo"]) == ("acked-late", "accepted",
                                                            "relay.example.test")  # fmt: skip


def test_reject_at_ack_refuses_a_message_it_kept(start_sinks):
    wrong_ack = {"kind": "reject", "stage": "ack", "code": 451, "enhanced": "4.3.0"}
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [wrong_ack]}]})
    assert attempt(sinks.port("mx"), msg_id="kept")[:2] == ("dot", 451)
    assert [r["msg_id"] for r in receipts(sinks)] == ["kept"]
