"""`maildrill run --metrics-port 0`: both /metrics endpoints scraped during a real drill
(real sinks, real Locust), their final counters checked against the journals, recounted
here with csv.DictReader (tests.helpers.read_csv), never from the code under test."""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import Scrape, lines_of, read_csv, stop_reading, wait_until

pytestmark = pytest.mark.slow

# The default drill cut to 3 s of schedule, its primary down for 0.8 s of it.
SHORT = [
    "--set", "campaign.schedule.0.duration_s=1",
    "--set", "campaign.schedule.1.duration_s=1.5",
    "--set", "campaign.schedule.2.duration_s=0.5",
    "--set", "faults.0.at=1.2",
    "--set", "faults.0.duration=0.8",
    "--set", "campaign.drain_s=2",
]  # fmt: skip
LINGER_S = 2.0  # the senders' /metrics stays up this long after the load: the last scrape


def metrics_urls(lines: queue.Queue[str], said: list[str]) -> dict[str, str]:
    """'Metrics: URL (senders)' and 'Metrics: URL (sink NAME)', printed before the load."""
    urls: dict[str, str] = {}
    while "secondary" not in urls:
        line = lines.get(timeout=60)
        said.append(line)
        if line.startswith("Metrics: "):
            url, _, who = line.removeprefix("Metrics: ").strip().partition(" ")
            urls[who.strip("()").removeprefix("sink ")] = url
    return urls


def scrape(url: str) -> Scrape | None:
    try:
        return Scrape.of(url, timeout=10)
    except (urllib.error.URLError, ConnectionError):
        return None  # not up yet


def test_final_counters_equal_the_journals(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "default", "--out", str(run_dir),
         *SHORT, "--metrics-port", "0", "--metrics-linger", str(LINGER_S)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said: list[str] = []
    lines, reader = lines_of(proc)
    try:
        urls = metrics_urls(lines, said)
        # Scrape the senders until the load has ended: that page's figures are final.
        pages: list[Scrape] = []
        while not (pages and pages[-1].value("maildrill_load_ended") == 1):
            assert proc.poll() is None, "the run ended before a scrape saw the load end"
            page = scrape(urls["senders"])
            if page is not None:
                pages.append(page)
            time.sleep(0.1)
        final = pages[-1]
        # The senders stopped: their sessions close, and the sinks' counts stop there.
        sinks: dict[str, Scrape] = {}
        for name in ("primary", "secondary"):
            url = urls[name]
            assert wait_until(
                lambda url=url: Scrape.of(url).value("maildrill_sink_sessions_open") == 0, 10
            )
            sinks[name] = Scrape.of(url)
        assert proc.wait(60) == 0
    finally:
        stop_reading(proc, reader)
    while not lines.empty():
        said.append(lines.get())
    assert any(
        p.value("maildrill_load_ended") == 0 and p.value("maildrill_attempts_total") > 0
        for p in pages
    ), "a scrape during the load"
    for before, after in itertools.pairwise(pages):  # counters never go back
        assert after.value("maildrill_attempts_total") >= before.value("maildrill_attempts_total")

    attempts = read_csv(run_dir / "attempts.csv")
    journaled = Counter((r["server"], r["outcome"]) for r in attempts)
    exposed = {k: v for k, v in final.by("maildrill_attempts_total", "server", "outcome").items()}
    assert {k: v for k, v in exposed.items() if v} == journaled
    accepted = Counter(r["server"] for r in attempts if r["outcome"] == "accepted")
    for server in ("primary", "secondary"):
        count = ("maildrill_attempt_latency_seconds_count", "server")
        assert final.by(*count).get((server,), 0) == accepted[server]
        latency = sum(
            float(r["end"]) - float(r["start"])
            for r in attempts
            if r["server"] == server and r["outcome"] == "accepted"
        )
        exposed_sum = final.value("maildrill_attempt_latency_seconds_sum", server=server)
        assert exposed_sum == pytest.approx(latency, abs=1e-5 * max(1, accepted[server]))
        # One sender process (no workers): each server's circuit is in exactly one state.
        assert final.value("maildrill_circuit_state", server=server) == 1
    finished = sum(r["final"] == "1" for r in attempts)
    assert final.value("maildrill_messages_finished_total") == finished
    planned = json.loads((run_dir / "run.json").read_text())["planned"]
    assert final.value("maildrill_messages_planned") == planned

    for name, page in sinks.items():
        rows = read_csv(run_dir / f"receipts-{name}.csv")
        outcomes = Counter("dropped" if r["outcome"] == "dropped" else "accepted" for r in rows)
        assert page.by("maildrill_sink_receipts_total", "outcome") == {
            ("accepted",): outcomes["accepted"],
            ("dropped",): outcomes["dropped"],
        }
        refusals = run_dir / f"refusals-{name}.csv"
        classes = (
            Counter(f"{r['code'][0]}xx" for r in read_csv(refusals)) if refusals.exists() else {}
        )
        assert page.value("maildrill_sink_refusals_total", code_class="4xx") == classes.get(
            "4xx", 0
        )
        assert page.value("maildrill_sink_refusals_total", code_class="5xx") == classes.get(
            "5xx", 0
        )

    figures = {
        "attempts": {f"{s or '-'}/{o}": n for (s, o), n in sorted(journaled.items())},
        "receipts": {n: p.value("maildrill_sink_receipts_total") for n, p in sinks.items()},
        "finished": finished,
        "planned": planned,
        "scrapes": len(pages),
    }
    print(json.dumps(figures, default=str))
