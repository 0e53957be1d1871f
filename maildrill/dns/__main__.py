"""`python -m maildrill.dns ZONEFILE...`: serve master files until SIGINT or SIGTERM.

How a drill runs its DNS server: a child process like the sinks (its own session, its
output in the run's logs), started on the zone files the run directory keeps. It prints
one ready line, `{"dns": {"host": H, "port": P, "control_port": C}}`, once UDP and TCP
both listen and its control API (`maildrill.dns.control`: DNS faults by schedule or
command, the token from MAILDRILL_CONTROL_TOKEN, else one made and put in the line as
`token`) answers on 127.0.0.1. With `--journal-dir DIR` it keeps faults-dns.csv (its
faults, as a sink's faults journal) and dns-queries.csv (every query and its answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from maildrill.control_auth import TOKEN_ENV, control_token
from maildrill.dns.board import FaultBoard
from maildrill.dns.control import ControlServer
from maildrill.dns.files import load_zones
from maildrill.dns.journals import keep_journals
from maildrill.dns.server import DnsServer
from maildrill.journal import CsvJournal


async def _serve(paths: list[Path], host: str, port: int, args: argparse.Namespace) -> None:
    authority = load_zones(paths)
    journals: list[CsvJournal] = []
    if args.journal_dir is not None:
        journals = keep_journals(authority, args.journal_dir)
    else:
        authority.board = FaultBoard(None)
    assert authority.board is not None
    made = not os.environ.get(TOKEN_ENV)
    control = ControlServer(authority.board, control_token(), args.control_port)
    server = DnsServer(authority, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with server:
            ready = {"host": server.host, "port": server.port}
            ready["control_port"] = await control.start()
            if made:
                ready["token"] = control.token
            print(json.dumps({"dns": ready}), flush=True)
            await stop.wait()
    finally:  # a fault still in force keeps no stop row, as a sink's (an open window)
        authority.board.close()
        await control.stop()
        for journal in journals:
            journal.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maildrill.dns", description=__doc__)
    parser.add_argument("zones", nargs="+", type=Path, help="master files, ORIGIN.zone")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--control-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--journal-dir", type=Path, help="faults-dns.csv, dns-queries.csv")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.zones, args.host, args.port, args))
    except (ValueError, OSError) as exc:
        print(f"maildrill dns: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
