"""Rendered reports of hand-built runs: golden Markdown, self-contained HTML, valid plots,
numbers straight from summary.json. UPDATE_GOLDEN=1 rewrites the golden files."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from loadtest.analysis import metrics, report, timeseries
from loadtest.analysis import summary as summary_mod
from loadtest.analysis.journals import load
from loadtest.analysis.loaded import RunDir
from loadtest.analysis.summary_model import Summary
from loadtest.analysis.view import num
from tests import runs
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    run_dir = runs.drill(tmp_path_factory.mktemp("drill") / "run")
    return run_dir, summary_mod.write(run_dir).model_dump(mode="json")


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    run_dir = runs.steps(tmp_path_factory.mktemp("steps") / "run")
    return run_dir, summary_mod.write(run_dir).model_dump(mode="json")


def write_report(out: Path, summary: dict[str, Any], run_dir: Path) -> None:
    """The reports of `run_dir`'s journals and a doctored summary, written to `out`."""
    report.write(out, Summary.model_validate(summary), RunDir.load(run_dir))


def normalised(text: str, run_dir: Path) -> str:
    text = text.replace(str(run_dir), "RUN_DIR")
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "YYYY-MM-DD HH:MM:SS UTC", text)


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_report_md_matches_golden(name, request):
    run_dir, _ = request.getfixturevalue(name)
    text = normalised((run_dir / "report.md").read_text(), run_dir)
    golden = GOLDEN / f"report-{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"report.md differs from {golden} (UPDATE_GOLDEN=1)"


def test_write_produces_every_output(drill):
    run_dir, _ = drill
    for name in ("summary.json", "report.html", "report.md"):
        assert (run_dir / name).stat().st_size > 0, name
    for name in ("throughput", "latency", "replies", "lateness"):
        assert (run_dir / "plots" / f"{name}.png").exists(), name
    for name in ("servers", "latency", "replies", "lateness"):
        assert (run_dir / "series" / f"{name}.csv").exists(), name
    assert not (run_dir / "plots" / "capacity.png").exists()  # not a step load


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_plots_are_valid_pngs(name, request):
    run_dir, _ = request.getfixturevalue(name)
    pngs = sorted((run_dir / "plots").glob("*.png"))
    assert pngs
    for path in pngs:
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] >= 800
            assert image.size[1] >= 400
    if name == "steps":
        assert (run_dir / "plots" / "capacity.png").exists()


ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_html_has_no_external_references(name, request):
    run_dir, _ = request.getfixturevalue(name)
    html = (run_dir / "report.html").read_text()
    assert "http://" not in html
    assert "https://" not in html
    assert "<link" not in html.lower()
    assert not re.search(r"<script[^>]*\bsrc\b", html, re.IGNORECASE)
    assert "<script" not in html.lower()  # no scripts at all
    assert "url(" not in html  # no CSS fetches
    refs = ATTR.findall(html)
    assert refs
    for attr, value in refs:
        assert value.startswith("#") or value.startswith("data:image/png;base64,"), (attr, value)
    images = [v for a, v in refs if a.lower() == "src"]
    assert len(images) == len(list((run_dir / "plots").glob("*.png")))
    for value in images:  # every embedded plot decodes to the PNG on disk
        png = base64.b64decode(value.split(",", 1)[1])
        assert png[:8] == PNG_MAGIC
        assert png in {p.read_bytes() for p in (run_dir / "plots").glob("*.png")}


def test_html_verdict_banner(drill):
    run_dir, summary = drill
    html = (run_dir / "report.html").read_text()
    assert not summary["slo"]["passed"]
    assert '<div class="verdict fail"><strong>SLOs FAILED</strong>' in html


def test_partial_run_says_so(tmp_path, drill):
    run_dir, summary = drill
    partial = copy.deepcopy(summary)
    partial["partial"] = True
    partial["harness"]["interrupted_by"] = "SIGINT"
    out = tmp_path / "copy"
    out.mkdir()
    (out / "scenario.yaml").write_text((run_dir / "scenario.yaml").read_text())
    write_report(out, partial, run_dir)
    md = (out / "report.md").read_text()
    assert "> **PARTIAL RUN**: The run was interrupted by SIGINT: SLOs FAILED on partial" in md
    assert '<div class="verdict partial">' in (out / "report.html").read_text()
    assert "| n/a | interrupted | by SIGINT |" in md


def leaves(node: Any) -> list[float]:
    if isinstance(node, dict):
        return [v for child in node.values() for v in leaves(child)]
    if isinstance(node, list):
        return [v for child in node for v in leaves(child)]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return []
    return [node]


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def md_tables(text: str) -> dict[str, list[list[str]]]:
    """Section title -> body rows of its table (header and rule rows dropped)."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|") and title:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            tables.setdefault(title, []).append(cells)
    return {t: rows[2:] for t, rows in tables.items()}


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_every_number_in_the_tables_is_a_summary_value(name, request):
    run_dir, summary = request.getfixturevalue(name)
    allowed = {num(v) for v in leaves(summary)}
    allowed |= {num(v * 100.0, 2) for v in leaves(summary.get("capacity", {}))}  # percentages
    allowed |= {num(v) for v in (200, 250, 421, 550)}  # in reply keys "421 4.7.0"
    tables = md_tables((run_dir / "report.md").read_text())
    assert "Messages" in tables
    assert "SLOs" in tables
    checked = 0
    for title, rows in tables.items():
        if title == "Harness events":  # times relative to the start, checked below
            continue
        for row in rows:
            for cell in row[1:]:  # the first column names the row
                for token in NUMBER.findall(cell.replace("5.7.1", "").replace("4.7.0", "")):
                    assert token in allowed, (title, row, token)
                    checked += 1
    assert checked > 30


def test_report_numbers_are_the_summary_values(drill):
    run_dir, summary = drill
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    m = summary["messages"]
    f = summary["failovers"][0]
    lat = summary["latency_ms"]
    expected = [
        f"| {m['planned']} | {m['attempted']} | {m['accepted']} | {m['failed']} | "
        f"{m['received_unique']} | {m['lost']} | {m['duplicates']} | {m['phantom']} |",
        f"| primary | down | {num(f['onset_s'])} | {num(f['cleared_s'])} | "
        f"{num(f['detection_s'])} | {num(f['failover_s'])} | {num(f['failback_s'])} |",
        f"| latency, all servers | {num(lat['p50'])} | {num(lat['p90'])} | {num(lat['p95'])} |",
        f"| p95_latency_ms <= 15 | 15 | {num(lat['p95'])} | FAIL |",
        "| receipts-secondary.csv | 1 |",
    ]
    for text in expected:
        assert text in md, text
    assert f"<td>{num(f['failover_s'])}</td>" in html
    assert f"<td>{m['accepted']}</td>" in html
    # The known answers of the hand-built run.
    assert f["detection_s"] == pytest.approx(0.2)
    assert (m["duplicates"], m["phantom"]) == (1, 1)


def test_the_renderers_print_summary_values_not_their_own(tmp_path, drill):
    """Change the summary, not the journals: the report follows the summary."""
    run_dir, summary = drill
    doctored = copy.deepcopy(summary)
    doctored["messages"]["accepted"] = 4242
    doctored["failovers"][0]["failover_s"] = 12.345678
    doctored["latency_ms"]["p95"] = 777.5
    doctored["errors"] = {"451 4.3.0": 99}
    out = tmp_path / "doctored"
    out.mkdir()
    write_report(out, doctored, run_dir)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in ("4242", "12.346", "777.5", "451 4.3.0"):
        assert text in md, text
        assert text in html, text


def test_series_csvs_read_back_tidy(drill):
    run_dir, summary = drill
    servers = pd.read_csv(run_dir / "series" / "servers.csv")
    assert set(servers["server"]) == {"primary", "secondary"}
    # Every second present for every server, and the accepted counts add up.
    assert servers.groupby("server").size().nunique() == 1
    assert servers["accepted"].sum() == summary["messages"]["accepted"]
    per = servers.groupby("server")["accepted"].sum()
    for name, s in summary["throughput"]["per_server"].items():
        assert per[name] == s["accepted"]
    assert servers["refused"].sum() == 1
    assert servers["deferred"].sum() == 1
    assert servers["accepted_mb"].sum() == pytest.approx(39 * 10_000 / 1e6)
    replies = pd.read_csv(run_dir / "series" / "replies.csv")
    bad = replies[replies["class"] != "2xx"].groupby("reply")["count"].sum().to_dict()
    assert bad == summary["errors"]
    latency = pd.read_csv(run_dir / "series" / "latency.csv")
    secondary = latency[latency["server"] == "secondary"]
    assert secondary["p50"].max() == pytest.approx(20.0, abs=0.01)
    lateness = pd.read_csv(run_dir / "series" / "lateness.csv")
    assert lateness["count"].sum() == 40
    assert lateness["second"].min() == 0


def test_open_sessions_follow_the_receipts():
    receipts = pd.DataFrame(
        {"sink": ["a", "a", "a", "b"], "session": ["a.1", "a.1", "a.2", "b.1"],
         "time": [0.5, 3.2, 1.1, 2.0], "msg_id": list("wxyz")}
    )  # fmt: skip
    attempts = pd.DataFrame(
        {"server": ["a", "b"], "outcome": ["accepted"] * 2, "end": [0.2, 4.9], "bytes": [1, 1]}
    )
    frame = timeseries.servers(attempts, receipts, 0.0).set_index(["second", "server"])
    assert frame.loc[(slice(None), "a"), "open_sessions"].tolist() == [1, 2, 1, 1, 0]
    assert frame.loc[(slice(None), "b"), "open_sessions"].tolist() == [0, 0, 1, 0, 0]


def test_reply_keys_of_the_errors_table(drill):
    run_dir, summary = drill
    expected = {"421 4.7.0": 1, "dropped at dot": 1, "refused at connect": 1}
    assert summary["errors"] == expected
    attempts = load(run_dir).attempts
    counts = metrics.reply_counts(attempts, ["server"])
    assert counts.to_dict("records") == [
        {"server": "primary", "reply": "250 2.0.0", "count": 27},
        {"server": "primary", "reply": "421 4.7.0", "count": 1},
        {"server": "primary", "reply": "dropped at dot", "count": 1},
        {"server": "primary", "reply": "refused at connect", "count": 1},
        {"server": "secondary", "reply": "250 2.0.0", "count": 12},
    ]


def test_summary_json_has_capacity_and_stays_plain_json(steps):
    run_dir, summary = steps
    data = json.loads((run_dir / "summary.json").read_text())
    assert data["capacity"]["knee_msgs_per_s"] == 30.0
    assert data["capacity"] == json.loads(json.dumps(summary["capacity"]))


def test_probes_preflight_and_any_other_summary_key_are_reported(tmp_path, drill):
    run_dir, summary = drill
    doctored = copy.deepcopy(summary)
    doctored["probes"] = {
        "interval_ms": 500,
        "timeout_ms": 1000,
        "servers": {
            "primary": {"probes": 44, "passed": 32, "availability": 0.727273, "first_s": -1.5,
                        "last_s": 20.0,
                        "latency_ms": {"p50": 1.778, "p95": 3.729, "max": 5.873}, "down_s": 6.0,
                        "down": [{"start_s": 8.45, "noticed_s": 8.46, "end_s": 14.45,
                                  "duration_s": 6.0, "probes": 12,
                                  "outcomes": {"refused": 12}}]},
        },
    }  # fmt: skip
    doctored["failovers"][0]["monitor_detection_s"] = 0.427
    doctored["preflight"] = {"ok": False, "reference": "primary",
                             "flags": [{"message": "no STARTTLS"}]}  # fmt: skip
    doctored["relay"] = {"backup": {"upstream": None, "queued": 3, "forward_attempts_deferred": 2,
                                    "forwarded": 1, "bounced": 0, "left_in_queue": 2,
                                    "max_depth": 3, "drain_s": 2.5, "end_to_end_ms": {},
                                    "depth_series": []}}  # fmt: skip
    doctored["brand_new"] = [{"a": 1}]
    out = tmp_path / "more"
    out.mkdir()
    write_report(out, doctored, run_dir)
    md = (out / "report.md").read_text()
    assert (
        "| primary | 44 | 32 | 72.73 % | 1.778 / 3.729 / 5.873 | 6 | 8.45-14.45 s (refused 12) |"
        in md
    )
    assert "| monitor detection s | monitor recovery s |" in md
    assert "| 0.427 | n/a |" in md
    assert "| verdict | NOT OK |" in md
    assert "| flag | {message: no STARTTLS} |" in md
    assert "| backup | n/a | 3 | 1 | 2 | 0 | 2 | 3 | 2.5 | n/a / n/a / n/a / n/a |" in md
    assert "| brand_new\\[0\\].a | 1 |" in md  # brackets escaped: no link from a key


def test_a_run_interrupted_before_any_attempt_still_gets_its_report(tmp_path):
    from maildrill.records import AttemptRecord

    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    runs.write_csv(run_dir / "attempts.csv", AttemptRecord, [])
    (run_dir / "run.json").write_text(json.dumps({"run_id": "x", "t0": runs.T0, "planned": 10}))
    (run_dir / "harness.json").write_text(json.dumps({"partial": True, "interrupted_by": "SIGINT"}))
    (run_dir / "scenario.yaml").write_text(runs.DRILL_SCENARIO)
    summary = summary_mod.write(run_dir)
    assert summary.messages.not_sent == 10
    md = (run_dir / "report.md").read_text()
    assert "> **PARTIAL RUN**: The run was interrupted by SIGINT" in md
    assert "| 10 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 10 | 0 |" in md
    for path in (run_dir / "plots").glob("*.png"):
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_mta_delivery_section_lays_out_each_path(tmp_path, drill):
    run_dir, summary = drill
    doctored = copy.deepcopy(summary)
    delay = {"p50": 1.5, "p95": 900.25, "p99": 2486.0, "max": 2486.5}
    doctored["mta"] = {
        "primary": {"accepted": 21, "delivered": 20, "duplicated": 6, "stranded": 1,
                    "undelivered": 1, "delivery_delay_ms": delay, "drain_s": 0.023,
                    "paths": {"other-mx": {"messages": 8, "receipts": 14,
                                           "delivery_delay_ms": delay,
                                           "relayed_by": {"primary.maildrill.test": 14}}}},
    }  # fmt: skip
    out = tmp_path / "mta"
    out.mkdir()
    write_report(out, doctored, run_dir)
    md = (out / "report.md").read_text()
    tables = md_tables(md)
    assert tables["Delivery through the MTAs under test"] == [
        ["primary", "(all)", "21", "20", "6", "1", "1", "1.5 / 900.25 / 2486 / 2486.5", "0.023",
         ""],
        ["primary", "other-mx", "", "8", "", "", "", "1.5 / 900.25 / 2486 / 2486.5", "",
         "14 (primary.maildrill.test 14)"],
    ]  # fmt: skip
    assert "mta.primary" not in md  # laid out in its own section, not under More results


@pytest.mark.parametrize("name", ["drill", "steps"])
def test_the_throughput_plot_comes_right_under_the_verdict(name, request):
    """What happened, at a glance, before any table: the verdict, then mail per server over
    the run with the fault windows on it; the other plots stay at the end, and no plot is
    shown twice."""
    run_dir, _ = request.getfixturevalue(name)
    md = (run_dir / "report.md").read_text().splitlines()
    verdict = next(i for i, line in enumerate(md) if line.startswith("> **"))
    plot = md.index("![Throughput per server](plots/throughput.png)")
    first_table = next(i for i, line in enumerate(md) if line.startswith("## "))
    assert verdict < plot < first_table
    assert [line for line in md[verdict + 1 : plot] if line] == []  # nothing between them
    assert sum("plots/throughput.png" in line for line in md) == 1
    assert md.index("## Plots") > first_table
    html = (run_dir / "report.html").read_text()
    throughput = base64.b64encode((run_dir / "plots" / "throughput.png").read_bytes()).decode()
    at = html.index(throughput)
    assert html.index('<div class="verdict') < at < html.index("<nav>") < html.index("<h2")
    assert html.count(throughput) == 1


def test_the_lead_caption_names_each_fault_window(drill):
    run_dir, summary = drill
    (f,) = summary["failovers"]
    caption = (
        f"shaded: the fault windows (down on primary from {num(f['onset_s'])} s "
        f"to {num(f['cleared_s'])} s)."
    )
    assert caption in (run_dir / "report.md").read_text()
    assert caption in (run_dir / "report.html").read_text()


def test_the_throughput_plot_shades_each_fault_window(drill):
    """The shaded span on both axes of the throughput plot is the fault's window, from the
    faults journal: start and stop rows of faults-primary.csv, from t0."""
    from matplotlib.colors import to_rgb

    from loadtest.analysis import plots
    from tests.helpers import read_csv

    run_dir, _ = drill
    run = RunDir.load(run_dir)
    summary = summary_mod.summarise(run)
    frames = report.series(run.journals)
    figure = plots.throughput(
        frames["servers"], frames["lateness"], summary.failovers, plots.colours(["primary"])
    )
    rows = read_csv(run_dir / "faults-primary.csv")
    start, stop = (float(r["time"]) - runs.T0 for r in rows if r["kind"] == "down")
    for ax in figure.axes:
        spans = [
            (p.get_x(), p.get_x() + p.get_width())
            for p in ax.patches
            if p.get_facecolor()[:3] == pytest.approx(to_rgb(plots.FAULT_COLOUR))
        ]
        assert spans == [(pytest.approx(start), pytest.approx(stop))]
