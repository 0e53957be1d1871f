"""Read a run directory's journals into DataFrames, skipping torn or corrupt lines."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

NUMERIC = {
    "attempts": ("attempt", "intended", "due", "start", "connected", "end", "code", "bytes",
                 "recipients", "recipients_refused", "new_connection", "retry", "failover",
                 "final", "maybe_duplicate"),
    "receipts": ("time", "rcpt_count", "size"),
    "refusals": ("time", "code", "rcpt_count"),
    "faults": ("time",),
    "relay": ("time", "attempt", "code", "queued_at"),
}  # fmt: skip
REQUIRED = {
    "attempts": ("msg_id", "attempt", "server", "intended", "start", "end", "outcome"),
    "receipts": ("msg_id", "sink", "time", "size", "session"),
    "refusals": ("sink", "time", "stage", "code"),
    "faults": ("sink", "kind", "state", "time"),
    "relay": ("time", "sink", "msg_id", "event"),
}


@dataclass
class Journals:
    run_dir: Path
    attempts: pd.DataFrame
    receipts: pd.DataFrame
    refusals: pd.DataFrame
    faults: pd.DataFrame
    run: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)
    relay: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # backup-mx queues  # file name -> bad lines skipped

    @property
    def t0(self) -> float:
        t0 = self.run.get("t0")
        if t0:
            return float(t0)
        if len(self.attempts):
            return float(self.attempts["intended"].min())
        return 0.0


def _read(paths: list[Path], kind: str, skipped: dict[str, int]) -> pd.DataFrame:
    """Concatenate CSV journals of one kind; a line with the wrong shape is skipped and counted."""
    frames = []
    for path in sorted(paths):
        text = path.read_text(encoding="utf-8", errors="replace")
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            continue
        header, body = rows[0], rows[1:]
        good = [r for r in body if len(r) == len(header)]
        bad = len(body) - len(good)
        if text and not text.endswith("\n") and good and body and body[-1] is good[-1]:
            # A last line without its newline was cut mid-write: do not trust it.
            good.pop()
            bad += 1
        frame = pd.DataFrame(good, columns=header)
        for column in NUMERIC[kind]:
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        required = [c for c in REQUIRED[kind] if c in frame]
        numeric_required = [c for c in required if c in NUMERIC[kind]]
        if numeric_required:
            invalid = frame[numeric_required].isna().any(axis=1)
            bad += int(invalid.sum())
            frame = frame[~invalid]
        if bad:
            skipped[path.name] = bad
        frames.append(frame)
    if not frames:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c in NUMERIC[kind] else "object")
                for c in REQUIRED[kind]
            }
        )
    return pd.concat(frames, ignore_index=True)


def load(run_dir: Path) -> Journals:
    skipped: dict[str, int] = {}
    run_file = run_dir / "run.json"
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    return Journals(
        run_dir=run_dir,
        attempts=_read(list(run_dir.glob("attempts*.csv")), "attempts", skipped),
        receipts=_read(list(run_dir.glob("receipts*.csv")), "receipts", skipped),
        refusals=_read(list(run_dir.glob("refusals*.csv")), "refusals", skipped),
        faults=_read(list(run_dir.glob("faults*.csv")), "faults", skipped),
        relay=_read(list(run_dir.glob("relay*.csv")), "relay", skipped),
        run=run,
        skipped=skipped,
    )
