"""Messages per second the campaign factory builds, against a baseline of email.message.

Run: .venv/bin/python benchmarks/campaign_generation.py [--messages N]

(b) is the campaign factory of loadtest/campaign.py (templates built once, per message only
ids, headers and padding); (a) builds the same kind of multipart/alternative message with
the standard library's email.message.EmailMessage each time, as a naive script would.
The last line is the ratio, as docs/architecture.md asks of every benchmark.
"""

from __future__ import annotations

import argparse
import time
from email.message import EmailMessage

from loadtest.campaign import MessageFactory, StreamSpec


def naive(index: int, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "news@example.com"
    msg["To"] = f"user{index}@gmail.test"
    msg["Subject"] = f"Spring sale: {index}"
    msg["X-Maildrill-Id"] = f"bench-{index}"
    msg.set_content(body)
    msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    n = args.messages
    factory = MessageFactory([StreamSpec(size_median=20_000, size_sigma=0.5)], "bench", seed=1)
    body = "spring sale ends tonight " * 400

    started = time.perf_counter()
    for i in range(max(1, n // 10)):
        naive(i, body)
    a = max(1, n // 10) / (time.perf_counter() - started)

    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += factory.build(i, started).size
    b = n / (time.perf_counter() - started)
    print(f"(a) email.message, built each time: {a:10.0f} msgs/s")
    print(f"(b) maildrill campaign factory:     {b:10.0f} msgs/s ({total / n / 1000:.1f} KB mean)")
    print(f"ratio b/a={b / a:.2f}")


if __name__ == "__main__":
    main()
