"""aiosmtpd logs a warning per unknown command: a hostile client could grow a sink's log
without bound. A sink keeps at most a burst of warnings per window, then one line saying
how many it left out."""

from __future__ import annotations

import logging
import time

AIOSMTPD_LOGGER = "mail.log"


class RateLimit(logging.Filter):
    """At most `burst` WARNING records per `window_s` seconds pass; the first record of
    the next window says how many were dropped. Errors and tracebacks always pass (they
    are bugs worth seeing); INFO and below are left to the logger's level."""

    def __init__(self, burst: int = 50, window_s: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.reset()

    def reset(self) -> None:
        self.window_start = time.monotonic()
        self.passed = 0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or record.exc_info:
            return True
        now = time.monotonic()
        if now - self.window_start >= self.window_s:
            if self.dropped:
                record.msg = f"[{self.dropped} similar lines left out] {record.msg}"
            self.window_start, self.passed, self.dropped = now, 0, 0
        if self.passed >= self.burst:
            self.dropped += 1
            return False
        self.passed += 1
        return True


def install(burst: int = 50, window_s: float = 60.0) -> RateLimit:
    """Once per process: every sink and worker shares the one limit."""
    logger = logging.getLogger(AIOSMTPD_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, RateLimit):
            return existing
    limit = RateLimit(burst, window_s)
    logger.addFilter(limit)
    return limit
