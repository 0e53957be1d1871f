"""The `maildrill` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import sinks.cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="maildrill", description="Failover drills and capacity runs for SMTP setups."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink", help="start the sinks of a sink config file")
    sinks.cli.add_arguments(sink)
    sink.set_defaults(func=sinks.cli.run)
    demo = sub.add_parser("demo", help="primary and secondary sinks, a short outage, counters")
    demo.add_argument("--messages", type=int, default=40, help="messages to send (default 40)")
    demo.add_argument("--out", type=Path, help="journal directory (default reports/demo-TIME)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


def _demo(args: argparse.Namespace) -> int:
    from loadtest.demo import run_demo

    return run_demo(args.messages, args.out)


if __name__ == "__main__":
    sys.exit(main())
