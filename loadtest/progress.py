"""The progress line of a drill: share of the planned time, finished attempts, accepted
per second per server, faults in force. Redrawn in place on a terminal every second,
one line every 5 s otherwise (a log file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from loadtest.suppression import SUPPRESSED
from maildrill.journal import JournalTail
from maildrill.records import AttemptRecord

COLUMNS = ("final", "outcome", "end", "server")  # of AttemptRecord, all the line needs
WIDTH = 160  # of the line redrawn on a terminal
BAR = 24


class Progress:
    """Reads the attempts journal as it grows; counts for the progress line."""

    def __init__(self, path: Path) -> None:
        self.tail = JournalTail(path, AttemptRecord)
        self.attempts = 0
        self.finished = 0
        self.recent: list[tuple[float, str]] = []

    def poll(self) -> None:
        """Count the lines written since the last poll: four columns of each, not a whole
        record (a drill's orchestrator tails every attempt, thousands a second at a
        harness's ceiling, on the cores the sender and the sinks need)."""
        now = time.time()
        for final, outcome, end, server in self.tail.poll_columns(COLUMNS):
            try:
                self.finished += int(final)
                ended = float(end) if outcome == "accepted" else 0.0
            except ValueError:
                self.tail.skipped += 1
                continue
            if outcome == SUPPRESSED:  # a message not sent: no attempt
                continue
            self.attempts += 1
            if outcome == "accepted":
                self.recent.append((ended, server))
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
