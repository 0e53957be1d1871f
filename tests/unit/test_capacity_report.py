"""capacity.json, capacity.md and the plot, from a hand-made report: what is in them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from loadtest.capacity import report
from loadtest.capacity.model import CapacityReport, Curve, CurveStep, RuleModel, read
from loadtest.capacity.model import SearchSettingsModel as Settings


def step(rate: float, delivered: float, stable: bool) -> CurveStep:
    return CurveStep(
        rate=rate, offered_msgs_per_s=rate, accepted_msgs_per_s=min(rate, delivered),
        delivered_msgs_per_s=delivered, backlog_growth_msgs_per_s=max(0.0, rate - delivered),
        p95_latency_ms=21.5, p95_response_ms=22.0, attempts=int(rate), refused_share=0.0,
        timeout_share=0.0, throttled_share=0.0 if stable else 0.25, rejected_share=0.0,
        dropped_share=0.0, busy_connections=4.0, connections=5, stable=stable,
        failure=None if stable else "throttled", why="stable" if stable else "backlog grew",
        run_dir=f"steps/x/step-{int(rate)}",
    )  # fmt: skip


def made() -> CapacityReport:
    return CapacityReport(
        scenario="pair",
        started_at=1.0,
        finished_at=2.0,
        settings=Settings(
            start_rate=50,
            factor=2,
            precision=0.05,
            max_rate=400,
            min_rate=1,
            max_steps=12,
            step_s=3,
        ),
        rule=RuleModel(
            min_accepted_share=0.95,
            max_backlog_growth=0.02,
            p95_limit_ms=250,
            error_share=0.01,
            idle_share=0.8,
            on_time_s=1.25,
        ),
        curves=[
            Curve(
                name="primary",
                servers=["primary"],
                knee_msgs_per_s=100,
                first_unstable_msgs_per_s=104,
                max_stable_msgs_per_s=103,
                failure="throttled",
                ending="converged",
                steps=[
                    step(50, 50, True),
                    step(200, 103, False),
                    step(100, 100, True),
                    step(104, 101, False),
                ],
            ),
            Curve(
                name="all",
                servers=["primary", "secondary"],
                knee_msgs_per_s=400,
                first_unstable_msgs_per_s=None,
                max_stable_msgs_per_s=400,
                failure=None,
                ending="max_rate",
                steps=[step(400, 400, True)],
            ),
        ],
    )


def test_written_and_read_back(tmp_path: Path) -> None:
    report.write(tmp_path, made())
    back = CapacityReport.model_validate_json((tmp_path / "capacity.json").read_text())
    assert back == made()
    primary = back.curve("primary")
    assert primary is not None
    assert primary.knee_msgs_per_s == 100
    assert back.curve("nosuch") is None
    with Image.open(tmp_path / "plots" / "capacity.png") as image:
        assert image.format == "PNG"


def test_markdown_says_each_curve_and_how_its_search_ended(tmp_path: Path) -> None:
    text = report.markdown(made())
    assert "| primary | primary | 100 | 104 | 103 | throttled | found within 5% (4 steps) |" in text
    assert "stable at the highest rate allowed (400 msgs/s): raise --max-rate" in text
    assert "| 200 | 103 | 103 | 97 | 21.5 | 22 | 0.0% | 0.0% | 25.0% |" in text
    assert "p95 latency <= 250 ms" in text
    assert "Partial" not in text
    assert "Partial" in report.markdown(made().model_copy(update={"partial": True}))


def test_read_gives_the_report_or_one_line(tmp_path: Path) -> None:
    report.write(tmp_path, made())
    assert read(tmp_path) == made()
    with pytest.raises(ValueError, match=r"capacity\.json: cannot read it"):
        read(tmp_path / "nowhere")
    (tmp_path / "capacity.json").write_text('{"scenario": "x"}')
    with pytest.raises(ValueError, match=r"capacity\.json: started_at: Field required"):
        read(tmp_path)
