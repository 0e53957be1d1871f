"""The progress line of a drill: share of the planned time, finished attempts, accepted
per second per server, faults in force. Redrawn in place on a terminal every second,
one line every 5 s otherwise (a log file)."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from maildrill.journal import uncell

WIDTH = 160  # of the line redrawn on a terminal
BAR = 24


@dataclass
class Progress:
    """Reads the attempts journal as it grows; counts for the progress line."""

    path: Path
    offset: int = 0
    header: list[str] | None = None
    attempts: int = 0
    finished: int = 0
    recent: list[tuple[float, str]] = field(default_factory=list)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            return
        self.offset += cut
        text = chunk[:cut].decode("utf-8", "replace")
        rows = [[uncell(c) for c in row] for row in csv.reader(io.StringIO(text, newline=""))]
        if self.header is None and rows:
            self.header, rows = rows[0], rows[1:]
        assert self.header is not None
        col = {name: i for i, name in enumerate(self.header)}
        now = time.time()
        for row in rows:
            if len(row) != len(self.header):
                continue
            self.attempts += 1
            if row[col["final"]] == "1":
                self.finished += 1
            if row[col["outcome"]] == "accepted":
                self.recent.append((float(row[col["end"]]), row[col["server"]]))
        self.recent = [(t, s) for t, s in self.recent if now - t <= 1.0]

    def rates(self) -> dict[str, int]:
        """Accepted in the last second, per server."""
        since = time.time() - 1.0
        out: dict[str, int] = {}
        for end, server in self.recent:
            if end >= since:
                out[server] = out.get(server, 0) + 1
        return out


def render(
    elapsed: float,
    planned_s: float,
    finished: int,
    planned: int,
    attempts: int,
    rates: dict[str, int],
    faults: list[str],
) -> str:
    """The line itself (pure): `faults` as KIND@TARGET."""
    share = min(1.0, max(0.0, elapsed / planned_s)) if planned_s else 1.0
    bar = "#" * int(share * BAR) + "-" * (BAR - int(share * BAR))
    per_server = " ".join(f"{s} {n}/s" for s, n in sorted(rates.items())) or "-"
    return (
        f"[{bar}] {elapsed:5.1f}/{planned_s:.0f} s  finished {finished}/{planned}  "
        f"attempts {attempts}  {per_server}  faults: {', '.join(faults) or 'none'}"
    )


class ProgressLine:
    """The line on `out`, drawn from the attempts journal as it grows."""

    def __init__(self, out: TextIO, attempts: Path, planned: int, planned_s: float) -> None:
        self.out = out
        self.progress = Progress(attempts)
        self.planned = planned
        self.planned_s = planned_s
        self.every_s = 1.0 if out.isatty() else 5.0
        self.last = 0.0

    def tick(self, now: float, elapsed: float, faults: list[str]) -> None:
        """Show the line if it is time to."""
        if now - self.last >= self.every_s:
            self.show(elapsed, faults)
            self.last = now

    def show(self, elapsed: float, faults: list[str], final: bool = False) -> None:
        p = self.progress
        p.poll()
        line = render(
            elapsed, self.planned_s, p.finished, self.planned, p.attempts, p.rates(), faults
        )
        if self.out.isatty():
            self.out.write("\r" + line[:WIDTH].ljust(WIDTH) + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
