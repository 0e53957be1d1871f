"""report.md: the report as Markdown for pasting into tickets (tables, links to plots)."""

from __future__ import annotations

import re

from loadtest.analysis.view import ReportView, Table

# What could start markup anywhere in a line: code, links and images, emphasis, strike-
# through, entities, a table's cell edge. `<` only before what starts raw HTML or an
# autolink, `_` only where it could open or close emphasis (not inside a word: failover_s).
_ALWAYS = re.compile(r"([\\`*\[\]~&|])")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\v\f\x85\u2028\u2029]")


def cell(text: str) -> str:
    """User text (names, replies, errors) as Markdown that shows exactly that text, on one
    line: it can neither end a table cell nor add a heading, a link, HTML or code."""
    text = _LINE_BREAK.sub(" ", text)
    text = _ALWAYS.sub(r"\\\1", text)
    text = _TAG.sub(r"\\<", text)
    return _UNDERSCORE.sub(r"\\_", text)


def fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so none can close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def table(t: Table) -> list[str]:
    lines = [f"## {t.title}", ""]
    if not t.rows:
        lines += [f"_{t.empty}_", ""]
    else:
        lines.append("| " + " | ".join(cell(h) for h in t.headers) + " |")
        lines.append("|" + "|".join("---" for _ in t.headers) + "|")
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
        lines.append("")
    if t.note and t.rows:
        lines += [t.note, ""]
    return lines


def render(view: ReportView) -> str:
    v = view.verdict
    lines = [f"# {cell(view.title)}", ""]
    lines += [" · ".join(f"{k}: {cell(value)}" for k, value in view.facts), ""]
    lines += [f"> **{v.headline}**: {cell(v.detail)}", ""]
    if view.lead_plot is not None:  # right under the verdict, before the tables
        p = view.lead_plot
        lines += [f"![{p.title}]({p.path})", "", cell(view.lead_caption), ""]
    for t in view.sections:
        lines += table(t)
    if view.plots:
        lines += ["## Plots", ""]
        for p in view.plots:
            lines += [f"![{p.title}]({p.path})", ""]
    if view.scenario_text:
        text = view.scenario_text.rstrip("\n")
        lines += ["## Scenario as run", "", f"{fence(text)}yaml", text, fence(text), ""]
    return "\n".join(lines)
