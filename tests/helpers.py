"""Small helpers shared by tests."""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Callable
from pathlib import Path


def message(msg_id: str, body: str = "Hello.\r\n", extra: str = "") -> str:
    return (
        f"From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: test {msg_id}\r\n"
        f"Message-ID: <{msg_id}@maildrill.test>\r\nX-Maildrill-Id: {msg_id}\r\n{extra}\r\n{body}"
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0, step: float = 0.005) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def connect_refused(port: int) -> bool:
    """True when a TCP connect to 127.0.0.1:`port` is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


class RawClient:
    """SMTP spoken by hand over a socket, for input smtplib would never send."""

    def __init__(self, port: int, timeout: float = 2.0, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> tuple[int, bytes] | None:
        """The next reply as (code, text of its last line); None when the server closed."""
        while True:
            line = self._line()
            if line is None:
                return None
            if line[3:4] != b"-":
                return int(line[:3]), line[4:]

    def command(self, line: bytes) -> tuple[int, bytes] | None:
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_server(self) -> bool:
        """True when the server closes the connection (EOF or reset) before the timeout."""
        try:
            return self._line() is None
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
