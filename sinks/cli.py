"""`maildrill sink CONFIG` and `python -m sinks CONFIG`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from maildrill.numbers import finite_float
from sinks.config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="sink configuration (YAML)")
    parser.add_argument("--out", type=Path, help="journal directory (default: from config)")
    parser.add_argument(
        "--start-at", type=finite_float, help="epoch seconds of schedule zero (default: now)"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop"
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        for sink in config.sinks:
            if sink.auth is not None:
                sink.auth.table()  # variables and files it names exist, before anything starts
    except ConfigError as exc:
        print(f"maildrill sink: {exc}", file=sys.stderr)
        return 2
    journal_dir = args.out or config.journal_dir
    if journal_dir is None:
        journal_dir = Path("reports") / time.strftime("sinks-%Y%m%d-%H%M%S")
    try:
        journal_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"maildrill sink: cannot create {journal_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    # Imported here: every `maildrill` command builds this parser, few start sinks, and
    # the server stack (aiohttp, aiosmtpd) costs a third of a second to import.
    from sinks.backup_mx import QueueUnavailable
    from sinks.runner import serve

    coro = serve(config, journal_dir, start_at=args.start_at)
    try:
        if args.loop == "uvloop":
            import uvloop

            final = uvloop.run(coro)
        else:
            final = asyncio.run(coro)
    except QueueUnavailable as exc:  # a backup MX's queue, held by another process
        print(f"maildrill sink: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"maildrill sink: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 1 if final.get("errors") else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
