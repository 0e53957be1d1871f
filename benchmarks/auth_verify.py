"""A provider sink's accept rate with its authentication checks on and off, in one run.

Run: .venv/bin/python benchmarks/auth_verify.py [--messages N] [--clients C] [--rounds R]

Two sinks in this process, one plain, one with `verify:` (enforce none); C client
threads each send N / C DKIM-signed messages over one connection, from 127.0.0.11, to
each sink in turn (interleaved rounds, the best of each kept, as the machine is shared).
The checked sink's lookups are answered by an in-memory zone (sinks.authcheck.ZoneLookup,
set on its checker after start) that publishes SPF, the DKIM key, DMARC and PTR, so every
message passes all four: this measures what the checks cost the sink (pyspf, dkimpy's
RSA verify, the thread hop), not a DNS server's round trips, which add their own latency
per message without using the sink's CPU (the checks wait in threads).

The last line is `off=…/s on=…/s ratio on/off=…` and the share of receipts that passed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402

from sinks.authcheck import ZoneLookup  # noqa: E402
from sinks.config import parse_config  # noqa: E402
from sinks.runner import SinkSet  # noqa: E402
from tests.unit.test_authcheck import PRIVATE, PUBLIC  # noqa: E402


def signed(i: int) -> bytes:
    body = (
        f"From: <news@shop.test>\r\nTo: <a@gmail.test>\r\nSubject: m{i}\r\n"
        f"X-Maildrill-Id: m{i}\r\nMessage-ID: <m{i}@shop.test>\r\n\r\nhello {i}\r\n"
    ).encode()
    return dkim.sign(body, b"s1", b"shop.test", PRIVATE, include_headers=[b"from"]) + body


def zone() -> ZoneLookup:
    z = ZoneLookup()
    z.add("shop.test", "TXT", "v=spf1 ip4:127.0.0.11 -all")
    z.add("s1._domainkey.shop.test", "TXT", PUBLIC)
    z.add("_dmarc.shop.test", "TXT", "v=DMARC1; p=reject")
    z.add("11.0.0.127.in-addr.arpa", "PTR", "mx1.shop.test")
    z.add("mx1.shop.test", "A", "127.0.0.11")
    return z


def blast(port: int, messages: list[bytes], clients: int) -> float:
    """Messages per second accepted, `clients` connections in parallel."""
    share = [messages[i::clients] for i in range(clients)]
    errors: list[Exception] = []

    def one(batch: list[bytes]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.11", 0)) as c:
                c.ehlo("mx1.shop.test")
                for msg in batch:
                    c.sendmail("news@shop.test", ["a@gmail.test"], msg)
        except (OSError, smtplib.SMTPException) as exc:  # reported below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(b,)) for b in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(messages) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = parse_config(
        {
            "sinks": [
                {"name": "off"},
                {"name": "on", "verify": {"dns": "127.0.0.1:9", "concurrency": 8}},
            ]
        }
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        sinks = SinkSet(config, Path(tmp))
        asyncio.run_coroutine_threadsafe(sinks.start(), loop).result(30)
        checker = sinks["on"].checker
        assert checker is not None
        checker.lookup = zone()
        messages = [signed(i) for i in range(args.messages)]
        best = {"off": 0.0, "on": 0.0}
        for _ in range(args.rounds):
            for name in ("off", "on"):
                rate = blast(sinks[name].port, messages, args.clients)
                best[name] = max(best[name], rate)
                print(f"{name}: {rate:,.0f} msgs/s", flush=True)
        asyncio.run_coroutine_threadsafe(sinks.stop(), loop).result(30)
        with (Path(tmp) / "receipts-on.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        checks = ("spf", "dkim", "dmarc", "ptr")
        passed = sum(1 for r in rows if all(r[c] == "pass" for c in checks))
    loop.call_soon_threadsafe(loop.stop)
    print(
        f"off={best['off']:,.0f}/s on={best['on']:,.0f}/s "
        f"ratio on/off={best['on'] / best['off']:.2f} "
        f"all four passed={passed}/{len(rows)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
