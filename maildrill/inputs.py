"""Reading what a user hands the tool (config and scenario files, YAML, pydantic models)
and saying what is wrong with it in one line: both halves (sinks and loadtest) read input
this way, so bad input gets the same kind of message everywhere."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import yaml
from pydantic import ValidationError


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def yaml_problem(exc: yaml.YAMLError | ValueError) -> str:
    """PyYAML's message spans lines and quotes the input: the problem and where, one line."""
    if not isinstance(exc, yaml.YAMLError):
        # A value PyYAML recognised but could not build: an integer of thousands of
        # digits (Python reads at most 4300), a date such as 2024-13-45.
        return "a value that cannot be read: " + " ".join(str(exc).split(";")[0].split())
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def config_text(path: Path) -> str:
    """A config or scenario file's text. Only a regular file of sane size: `/dev/zero` or a
    FIFO would be read forever. OSError (with strerror) or UnicodeDecodeError otherwise."""
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise OSError(errno.EFBIG, f"over {MAX_CONFIG_BYTES // 2**20} MiB")
        return f.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
