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
