"""A real (short) default drill: its reports are written, self-contained, re-analysable."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers import SHORT_DEFAULT

pytestmark = pytest.mark.slow

# The shared short drill with a 2 s drain (a later --set wins).
SHORT_DRILL = [*SHORT_DEFAULT, "--set", "campaign.drain_s=2"]


def maildrill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_default_drill_writes_reports_that_re_analysis_reproduces(tmp_path):
    run_dir = tmp_path / "run"
    done = maildrill("run", "default", "--out", str(run_dir), *SHORT_DRILL)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert f"Report: {run_dir / 'report.html'}" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["capacity"]["knee_msgs_per_s"] is None  # not a step load
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "http://" not in html
    assert "https://" not in html
    plots = sorted(p.stem for p in (run_dir / "plots").glob("*.png"))
    assert plots == ["latency", "lateness", "replies", "throughput"]
    for name in plots:
        with Image.open(run_dir / "plots" / f"{name}.png") as image:
            assert image.format == "PNG"
    md = (run_dir / "report.md").read_text()
    f = summary["failovers"][0]
    assert f"| {f['target']} | {f['kind']} |" in md
    assert (run_dir / "series" / "servers.csv").exists()

    # Re-analysis from the journals alone gives the same summary and the same Markdown.
    again = maildrill("report", str(run_dir))
    assert again.returncode in (0, 1), again.stderr
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert (run_dir / "report.md").read_text() == md

    compared = maildrill("compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "c.md"))
    assert compared.returncode == 0, compared.stderr
    assert "| worse |" not in compared.stdout
    assert "| better |" not in compared.stdout
