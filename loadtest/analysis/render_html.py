"""report.html: one self-contained file. It opens from disk with no network: the style is
inline, the plots are data: URIs, and there are no scripts, links or external references."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from html import escape

from loadtest.analysis.view import ReportView, Table

# Even a stray reference could not reach the network: images from data: only, inline style.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0 auto; max-width: 1100px; padding: 1em 1.5em 3em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.facts { color: #555; margin: 0 0 1em; }
.facts span { margin-right: 1.5em; }
.verdict { padding: 0.8em 1.1em; border-radius: 6px; font-size: 1.1em; margin: 1em 0; }
.verdict strong { font-size: 1.25em; margin-right: 0.6em; }
.verdict.pass { background: #e3f4e1; border: 1px solid #4caf50; }
.verdict.fail { background: #fde2e1; border: 1px solid #d32f2f; }
.verdict.partial { background: #fff4d6; border: 1px solid #e0a000; }
.verdict.none { background: #eef1f5; border: 1px solid #8a99ad; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d5d9de; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f5f7; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
td.FAIL { color: #b71c1c; font-weight: 600; }
td.PASS { color: #1b5e20; font-weight: 600; }
.note { color: #555; font-size: 0.92em; max-width: 60em; }
.empty { color: #555; font-style: italic; }
nav a { margin-right: 1em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #e2e2e2; }
figcaption { color: #555; font-size: 0.92em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table(t: Table) -> str:
    parts = [f'<h2 id="{escape(t.anchor)}">{escape(t.title)}</h2>']
    if not t.rows:
        parts.append(f'<p class="empty">{escape(t.empty)}</p>')
    else:
        head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
        body = "\n".join(
            "<tr>"
            + "".join(
                f'<td class="{c}">{escape(c)}</td>' if c in ("PASS", "FAIL")
                else f"<td>{escape(c)}</td>"
                for c in row
            )
            + "</tr>"
            for row in t.rows
        )  # fmt: skip
        parts.append(
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
        )
    if t.note and t.rows:
        parts.append(f'<p class="note">{escape(t.note)}</p>')
    return "\n".join(parts)


def _figure(title: str, png: bytes, caption: str) -> str:
    return (
        f'<figure><img alt="{escape(title)}" src="{data_uri(png)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _lead_plot(view: ReportView, pngs: Mapping[str, bytes]) -> list[str]:
    """The lead plot right under the verdict, before the tables."""
    p = view.lead_plot
    if p is None or p.name not in pngs:
        return []
    return [_figure(p.title, pngs[p.name], f"{view.lead_caption} ({p.path})")]


def render(view: ReportView, pngs: Mapping[str, bytes]) -> str:
    """The page; `pngs` maps a plot's name to its PNG bytes (embedded, never linked)."""
    v = view.verdict
    facts = "".join(f"<span>{escape(k)}: <b>{escape(value)}</b></span>" for k, value in view.facts)
    anchors = [(t.anchor, t.title) for t in view.sections]
    if view.plots:
        anchors.append(("plots", "Plots"))
    if view.scenario_text:
        anchors.append(("scenario", "Scenario as run"))
    nav = "".join(f'<a href="#{escape(a)}">{escape(title)}</a>' for a, title in anchors)
    body = [
        f"<h1>{escape(view.title)}</h1>",
        f'<p class="facts">{facts}</p>',
        f'<div class="verdict {escape(v.status)}"><strong>{escape(v.headline)}</strong>'
        f"{escape(v.detail)}</div>",
        *_lead_plot(view, pngs),
        f"<nav>{nav}</nav>",
        *(table(t) for t in view.sections),
    ]
    if view.plots:
        body.append('<h2 id="plots">Plots</h2>')
        for p in view.plots:
            if p.name not in pngs:
                continue
            body.append(_figure(p.title, pngs[p.name], f"{p.title} ({p.path})"))
    if view.scenario_text:
        body.append('<h2 id="scenario">Scenario as run</h2>')
        body.append(f"<pre>{escape(view.scenario_text)}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{escape(view.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
