"""Small helpers shared by tests."""

from __future__ import annotations

import csv
from pathlib import Path


def message(msg_id: str, body: str = "Hello.\r\n", extra: str = "") -> str:
    return (
        f"From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: test {msg_id}\r\n"
        f"Message-ID: <{msg_id}@maildrill.test>\r\nX-Maildrill-Id: {msg_id}\r\n{extra}\r\n{body}"
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
