"""report.md: the report as Markdown for pasting into tickets (tables, links to plots)."""

from __future__ import annotations

from loadtest.analysis.view import ReportView, Table


def cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


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
    lines = [f"# {view.title}", ""]
    lines += [f"> **{v.headline}**: {cell(v.detail)}", ""]
    lines += [" · ".join(f"{k}: {cell(value)}" for k, value in view.facts), ""]
    for t in view.sections:
        lines += table(t)
    if view.plots:
        lines += ["## Plots", ""]
        for p in view.plots:
            lines += [f"![{p.title}]({p.path})", ""]
    if view.scenario_text:
        lines += ["## Scenario as run", "", "```yaml", view.scenario_text.rstrip("\n"), "```", ""]
    return "\n".join(lines)
