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
    "mta_queue": ("time",),
    "proxy": ("time", "code", "size", "bytes_up", "bytes_down"),
}  # fmt: skip
REQUIRED = {
    "attempts": ("msg_id", "attempt", "server", "intended", "start", "end", "outcome"),
    "receipts": ("msg_id", "sink", "time", "size", "session"),
    "refusals": ("sink", "time", "stage", "code"),
    "faults": ("sink", "kind", "state", "time"),
    "relay": ("time", "sink", "msg_id", "event"),
    "mta_queue": ("time", "mta", "msg_id", "queue"),
    "proxy": ("time", "proxy", "session", "event"),
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
    relay: pd.DataFrame = field(default_factory=pd.DataFrame)  # backup-MX queues
    mta_queue: pd.DataFrame = field(default_factory=pd.DataFrame)  # left in MTAs at the end
    proxy: pd.DataFrame = field(default_factory=pd.DataFrame)  # fault proxies' connections

    @property
    def t0(self) -> float:
        t0 = self.run.get("t0")
        if t0:
            return float(t0)
        if len(self.attempts):
            return float(self.attempts["intended"].min())
        return 0.0


def _read_careful(path: Path, kind: str) -> tuple[pd.DataFrame, int] | None:
    """Line by line with the csv module: every line of the wrong shape skipped and counted."""
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return None
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
    return frame, bad


def _read_clean(path: Path, kind: str) -> tuple[pd.DataFrame, int] | None:
    """pandas' C parser, for a journal with no damage but perhaps a torn last line: the same
    frame as `_read_careful`, many times faster. None (read carefully instead) when the
    file has quoted fields, or a line of the wrong shape, or a number that is not one.

    Without quotes, every complete line has the header's shape exactly when the file holds
    (fields - 1) commas per line and no line is too long (the parser refuses those).
    """
    data = path.read_bytes()
    end_of_header = data.find(b"\n")
    if end_of_header < 0 or b'"' in data:
        return None
    header = data[:end_of_header].decode("utf-8", errors="replace").rstrip("\r").split(",")
    if len(set(header)) != len(header):
        return None
    last_newline = data.rfind(b"\n")
    lines = data.count(b"\n")  # complete lines, the header's included
    if data.count(b",", 0, last_newline + 1) != (len(header) - 1) * lines:
        return None
    torn = int(last_newline != len(data) - 1)  # a last line without its newline
    del data  # parsed from the file again: pandas reads a path faster than a buffer
    numeric = [c for c in header if c in NUMERIC[kind]]
    text = [c for c in header if c not in NUMERIC[kind]]
    try:
        frame = pd.read_csv(
            path,
            dtype={**{c: "float64" for c in numeric}, **{c: str for c in text}},
            keep_default_na=False,
            na_values={c: [""] for c in numeric},
            skip_blank_lines=False,
            encoding_errors="replace",
            # The complete lines checked above, no more: a torn last line was cut
            # mid-write and is not trusted; lines appended since were not checked.
            nrows=lines - 1,
        )
    except (ValueError, pd.errors.ParserError):  # a line too long, a field not a number
        return None
    return frame, torn


def _read(paths: list[Path], kind: str, skipped: dict[str, int]) -> pd.DataFrame:
    """Concatenate CSV journals of one kind; a line with the wrong shape is skipped and counted."""
    frames = []
    for path in sorted(paths):
        parsed = _read_clean(path, kind)
        if parsed is None:
            parsed = _read_careful(path, kind)
        if parsed is None:
            continue
        frame, bad = parsed
        required = [c for c in REQUIRED[kind] if c in frame]
        numeric_required = [c for c in required if c in NUMERIC[kind]]
        if numeric_required:
            invalid = frame[numeric_required].isna().any(axis=1)
            if invalid.any():  # else keep the frame as it is: no copy of a clean journal
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
    if len(frames) == 1 and isinstance(frames[0].index, pd.RangeIndex):
        return frames[0]
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
        mta_queue=_read(list(run_dir.glob("mta-queue*.csv")), "mta_queue", skipped),
        proxy=_read(list(run_dir.glob("proxy-*.csv")), "proxy", skipped),
        run=run,
        skipped=skipped,
    )
