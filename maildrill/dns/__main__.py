"""`python -m maildrill.dns ZONEFILE...`: serve master files until SIGINT or SIGTERM.

How a drill runs its DNS server: a child process like the sinks (its own session, its
output in the run's logs), started on the zone files the run directory keeps. It prints
one ready line, `{"dns": {"host": H, "port": P}}`, once UDP and TCP both listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from maildrill.dns.files import load_zones
from maildrill.dns.server import DnsServer


async def _serve(paths: list[Path], host: str, port: int) -> None:
    server = DnsServer(load_zones(paths), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(json.dumps({"dns": {"host": server.host, "port": server.port}}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maildrill.dns", description=__doc__)
    parser.add_argument("zones", nargs="+", type=Path, help="master files, ORIGIN.zone")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.zones, args.host, args.port))
    except (ValueError, OSError) as exc:
        print(f"maildrill dns: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
