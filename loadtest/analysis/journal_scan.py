"""What the fast reader must know of a journal file before it trusts pandas' C parser with
it, found a few megabytes at a time: a journal of ten million attempts is about 2 GB, and
holding it in memory beside the frame pandas builds from it would double the analysis'
peak (issue 18). The answers are those of the same questions asked of the whole file.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from maildrill.journal import ESCAPE

CHUNK = 1 << 22  # 4 MiB


@dataclass(frozen=True)
class Scan:
    """One pass over a journal file's bytes."""

    size: int
    newlines: int  # complete lines, the header's included
    last_newline: int  # offset of the last newline; -1: none
    commas: int  # commas up to the last newline (complete lines only)
    quote_or_nul: bool  # a '"' or a NUL byte anywhere
    utf8: bool  # the whole file decodes as UTF-8
    escaped_cell: bool  # a cell starting with maildrill.journal's ESCAPE after the header's first


def scan(path: Path) -> Scan:
    """Scan `path` (OSError as `open` and `read` raise it)."""
    escape = ESCAPE.encode()
    size = newlines = commas = commas_after = 0
    last_newline = -1
    quote_or_nul = escaped = False
    utf8 = True
    decoder = codecs.getincrementaldecoder("utf-8")()
    previous = b""  # the byte before this chunk: a two-byte mark may straddle chunks
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            count = chunk.count(b",")
            commas += count
            at = chunk.rfind(b"\n")
            if at >= 0:
                newlines += chunk.count(b"\n")
                last_newline = size + at
                commas_after = chunk.count(b",", at + 1)
            else:
                commas_after += count
            quote_or_nul = quote_or_nul or b'"' in chunk or b"\x00" in chunk
            if utf8 and (not chunk.isascii() or decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            if not escaped and escape in chunk:
                joined = previous + chunk
                escaped = b"," + escape in joined or b"\n" + escape in joined
            previous = chunk[-1:]
            size += len(chunk)
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return Scan(
        size=size,
        newlines=newlines,
        last_newline=last_newline,
        commas=commas - commas_after,
        quote_or_nul=quote_or_nul,
        utf8=utf8,
        escaped_cell=escaped,
    )
