"""Where maildrill may write: names that become file names, joins that stay inside the
output directory, and private directories for what must not be there at all.

Every name a user gives that ends up in a path (a scenario, server or sink name) must be a
plain file name: a name like `../x` or `/tmp/x` would put files outside the directory the
user chose. Validation refuses such names; `inside` checks again at the join, so a name
that slipped past validation fails loudly instead of writing elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # no separator, never "." or "..", no dot first
NAME_MAX = 64
RUN_ID_MAX = 128  # a name, a date and a time
_NAME = re.compile(NAME_PATTERN)


class UnsafePath(ValueError):
    """A path maildrill was about to write outside the directory it was given."""


def is_safe_name(name: str, longest: int = NAME_MAX) -> bool:
    """Whether `name` can be one component of a file name as it is."""
    return len(name) <= longest and _NAME.fullmatch(name) is not None


def inside(base: Path, *parts: str) -> Path:
    """`base / parts...`, refused (UnsafePath) unless it lies within `base`.

    Lexical: `..`, absolute parts and separators are what a hostile name brings; a symlink
    the user put in their own output directory is theirs to make."""
    for part in parts:
        if not part or "/" in part or "\\" in part or "\0" in part or part in (".", ".."):
            raise UnsafePath(f"{part!r} is not a plain file name (under {base})")
    return base.joinpath(*parts)


def make_private_dir() -> Path:
    """A new directory only this user can enter (mode 0700), for secrets a child process
    must read from a file; the caller removes it (`remove_private_dir`)."""
    return Path(tempfile.mkdtemp(prefix="maildrill-"))


def write_private(path: Path, text: str) -> None:
    """`text` to `path`, readable by this user only from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_TRUNC
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_whole(path: Path, text: str) -> None:
    """`text` to `path` so that a reader sees no file or all of it, never a part: written
    beside it, then renamed over it (a rename is atomic within a file system). run.json is
    written so: the orchestrator and tests poll for it and read it as soon as it is there."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def remove_private_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_dir() -> Iterator[Path]:
    """`make_private_dir` for the length of a `with` block."""
    path = make_private_dir()
    try:
        yield path
    finally:
        remove_private_dir(path)
