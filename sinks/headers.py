"""Find a few header values in raw message bytes without parsing the whole message."""

from __future__ import annotations


def header_block(content: bytes) -> bytes:
    """The header section (up to the first empty line), with a leading CRLF for searching."""
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    block = content if end < 0 else content[:end]
    return b"\r\n" + block


def header_value(block: bytes, lowered: bytes, name: bytes) -> str:
    """Value of header `name` (lower-case bytes, no colon) in `block`; '' when absent.

    `lowered` is `block.lower()`, computed once per message by the caller.
    Folded continuation lines are joined, as RFC 5322 unfolding does.
    """
    for newline in (b"\r\n", b"\n"):
        start = lowered.find(newline + name + b":")
        if start >= 0:
            start += len(newline) + len(name) + 1
            break
    else:
        return ""
    end = start
    while True:
        end = block.find(b"\n", end)
        if end < 0:
            end = len(block)
            break
        if end + 1 < len(block) and block[end + 1] in b" \t":
            end += 1
            continue
        break
    raw = block[start:end].replace(b"\r\n", b"").replace(b"\n", b"")
    return raw.strip().decode("utf-8", errors="replace")


def message_ids(content: bytes) -> tuple[str, str]:
    """(X-Maildrill-Id, Message-ID) of a message; '' where absent."""
    block = header_block(content)
    lowered = block.lower()
    return (
        header_value(block, lowered, b"x-maildrill-id"),
        header_value(block, lowered, b"message-id"),
    )
