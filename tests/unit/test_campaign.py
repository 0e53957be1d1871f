"""Campaign messages parse back, follow their size mix and repeat from a seed."""

from __future__ import annotations

import email
import email.policy
import math
import statistics

import pytest

from loadtest.campaign import MessageFactory, StreamSpec

STREAMS = [
    StreamSpec(name="promotional", weight=3, size_median=20_000, size_sigma=0.5),
    StreamSpec(
        name="transactional",
        weight=1,
        sender="receipts@shop.example.com",
        size_median=6_000,
        size_sigma=0.0,
        recipients_min=1,
        recipients_max=3,
        domains={"gmail.test": 1, "example.com": 1},
        attachment_share=1.0,
        attachment_size=3_000,
    ),
]


def test_message_parses_with_the_headers_an_esp_sends():
    factory = MessageFactory(STREAMS, "run7", seed=1)
    for index in range(50):
        m = factory.build(index, now=1_700_000_000)
        parsed = email.message_from_bytes(m.data, policy=email.policy.default)
        assert parsed["X-Maildrill-Id"] == m.msg_id == f"run7-{index}"
        assert parsed["X-Maildrill-Run"] == "run7"
        assert parsed["X-Maildrill-Stream"] == m.stream
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
            assert parsed[name], name
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        types = [p.get_content_type() for p in parsed.walk()]
        assert "text/plain" in types
        assert "text/html" in types
        if m.stream == "transactional":
            assert parsed.get_content_type() == "multipart/mixed"
            assert "application/pdf" in types
            assert m.size == 6_000
        assert all(len(line) <= 998 for line in m.data.split(b"\r\n"))
        assert b"\n" not in m.data.replace(b"\r\n", b"")


def test_size_distribution_and_stream_mix():
    factory = MessageFactory(STREAMS, "run", seed=2)
    messages = [factory.build(i) for i in range(3000)]
    promo = [m.size for m in messages if m.stream == "promotional"]
    share = len(promo) / len(messages)
    assert share == pytest.approx(0.75, abs=0.03)
    assert statistics.median(promo) == pytest.approx(20_000, rel=0.05)
    logs = [math.log(s) for s in promo if 1_500 < s < 500_000]
    assert statistics.stdev(logs) == pytest.approx(0.5, rel=0.1)
    trans = [m for m in messages if m.stream == "transactional"]
    counts = {len(m.recipients) for m in trans}
    assert counts == {1, 2, 3}
    domains = [r.rpartition("@")[2] for m in trans for r in m.recipients]
    assert set(domains) == {"gmail.test", "example.com"}


def test_same_seed_same_messages_other_seed_others():
    a = MessageFactory(STREAMS, "run", seed=5)
    b = MessageFactory(STREAMS, "run", seed=5)
    c = MessageFactory(STREAMS, "run", seed=6)
    assert [a.build(i, 1.0).data for i in range(20)] == [b.build(i, 1.0).data for i in range(20)]
    assert [a.build(i, 1.0).data for i in range(20)] != [c.build(i, 1.0).data for i in range(20)]
    # Any worker can build message k alone, in any order.
    assert a.build(13, 1.0).data == MessageFactory(STREAMS, "run", seed=5).build(13, 1.0).data
