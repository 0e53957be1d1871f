"""The senders' /metrics in distributed Locust (`--processes 2`: a master and two forked
workers): the master adds up what its workers ship, rows and circuits. Counts recounted
from attempts.csv with csv.DictReader (tests.helpers.read_csv)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
from collections import Counter

import pytest

from tests.helpers import Scrape, lines_of, read_csv, stop_reading
from tests.integration.test_locust import LOCUSTFILE, free_port, scenario_file

pytestmark = pytest.mark.slow


def test_the_master_exposes_its_workers_figures(start_sinks, tmp_path):
    out = tmp_path / "run"
    sinks = start_sinks({"sinks": [{"name": "primary"}, {"name": "secondary"}]}, journal_dir=out)
    path = scenario_file(tmp_path, sinks, rate=40, duration=2)
    port = str(free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary",
         "--scenario", str(path), "--journal-dir", str(out), "--processes", "2",
         "--master-bind-port", port, "--master-port", port,
         "--metrics-port", "0", "--metrics-linger", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines, reader = lines_of(proc)
    said: list[str] = []
    try:
        url = None
        while url is None:  # the master logs where it serves /metrics, at its start
            said.append(lines.get(timeout=60))
            found = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", said[-1])
            url = found[1] if found else None
        final = None
        while final is None:
            assert proc.poll() is None, "".join(said)
            try:
                page = Scrape.of(url)
            except (urllib.error.URLError, ConnectionError):
                page = None
            if page is not None and page.value("maildrill_load_ended") == 1:
                final = page
            time.sleep(0.1)
        assert proc.wait(30) == 0
    finally:
        stop_reading(proc, reader)
    attempts = read_csv(out / "attempts.csv")
    assert len({a["worker"] for a in attempts}) == 2
    journaled = Counter((a["server"], a["outcome"]) for a in attempts)
    exposed = final.by("maildrill_attempts_total", "server", "outcome")
    assert {k: v for k, v in exposed.items() if v} == journaled
    finished = sum(a["final"] == "1" for a in attempts)
    assert final.value("maildrill_messages_finished_total") == finished == 80
    for server in ("primary", "secondary"):
        # Each of the two workers told the master the state it sees.
        assert final.value("maildrill_circuit_state", server=server) == 2
