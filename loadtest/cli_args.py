"""Command-line arguments that `maildrill` and the standalone prober take alike.

A module of its own so that `python -m loadtest.prober` does not import the `maildrill`
CLI (and with it every command's imports) for one helper, and so the two cannot import
each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def server_args(parser: argparse.ArgumentParser, scenario_help: str, server_help: str) -> None:
    """--scenario FILE and --server NAME=HOST:PORT, as `check` and the prober take them."""
    parser.add_argument("--scenario", type=Path, help=scenario_help)
    parser.add_argument(
        "--server", action="append", default=[], metavar="NAME=HOST:PORT", help=server_help
    )


def port_number(text: str) -> int:
    """A port argument, 0-65535 (0: a free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0: a free one)")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: between 0 and 3600 seconds")
    return seconds


def metrics_args(parser: argparse.ArgumentParser) -> None:
    """--metrics-port PORT and --metrics-linger S (`maildrill run`: loadtest.sender_metrics)."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve the senders' Prometheus metrics on 127.0.0.1:PORT/metrics (0: a free "
        "port, printed); the sinks' are on their control ports",
    )
    parser.add_argument(
        "--metrics-linger",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="keep the senders' /metrics up S seconds after the load ends, for a last "
        "scrape (default 0)",
    )
