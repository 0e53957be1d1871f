"""Zones on disk, as master files: what a run directory keeps and what the server serves.

The orchestrator writes each zone once (`write_zones`), and the server process reads those
very files (`load_zones`): the zone in the run directory is the zone that was served.
A file is named after its zone (`shop.test.zone`), which is also its origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import dns.exception
import dns.name
import dns.zone

from maildrill.dns.server import Authority
from maildrill.dns.zone import Zone

SUFFIX = ".zone"
ZONE_DIR = "dns"  # the run directory's folder of zones (docs/run-directory.md)


def write_zones(zones: Iterable[Zone], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for zone in zones:
        path = directory / f"{zone.origin}{SUFFIX}"
        path.write_text(zone.to_text(), encoding="utf-8")
        paths.append(path)
    return paths


def load_zone(path: Path) -> dns.zone.Zone:
    """A master file written by `write_zones`; ValueError in one line when it is not one."""
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"{path}: a zone file is named ORIGIN{SUFFIX}")
    origin = dns.name.from_text(path.name.removesuffix(SUFFIX), origin=dns.name.root)
    try:
        return dns.zone.from_file(str(path), origin=origin, relativize=False)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except dns.exception.DNSException as exc:
        raise ValueError(f"{path}: not a zone file: {exc}") from None


def load_zones(paths: Sequence[Path]) -> Authority:
    return Authority([load_zone(p) for p in paths])
