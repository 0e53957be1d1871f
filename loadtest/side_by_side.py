"""Servers side by side, as both checks print them (`maildrill check` and its `--dns`):
one column per server, the first the reference the others are read against."""

from __future__ import annotations

from collections.abc import Sequence

LABEL = 14  # the row labels' column
MAX_CELL = 38  # a longer value is cut, with "..."

# A row: its label, one value per server, and whether values are compared with the first.
Row = tuple[str, list[str], bool]


def side_by_side(names: Sequence[str], table: Sequence[Row]) -> list[str]:
    """The header of server names and a line per row. '*' marks a compared value that
    differs from the reference's; '-' (nothing to compare) never differs."""
    longest = max(len(v) for _, values, _ in table for v in [*values, *names])
    width = min(MAX_CELL, longest + 2)
    lines = ["".ljust(LABEL) + "".join(n[:width].ljust(width + 2) for n in names).rstrip()]
    for label, values, compared in table:
        out = label.ljust(LABEL)
        for i, value in enumerate(values):
            text = value if len(value) <= width else value[: width - 3] + "..."
            if compared and i and value != values[0] and "-" not in (value, values[0]):
                text += " *"
            out += text.ljust(width + 2)
        lines.append(out.rstrip())
    return lines
