"""The Failover tab in a real browser (Debian's Chromium, headless, driven by selenium):
during a drill with two Locust workers (the tab on the master) it sees the primary's
circuit open while a fault is active, starts a fault with a click, sees it in the
timeline, stops it and sees the circuit close; the fault is journaled with `origin:
command` and is in the run's summary.

Screenshots go to the test's temporary directory; with MAILDRILL_README_SCREENSHOT=PATH
the one with the circuit open is also written there (the README's picture:
`MAILDRILL_README_SCREENSHOT=docs/failover-tab.png pytest tests/drills/test_failover_tab.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.cli import EXIT_PARTIAL
from tests.helpers import read_csv, wait_until

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="Debian's chromium and chromium-driver are not installed (make tools)",
    ),
]

# The default drill at 10 msgs/s for 30 s, its own fault left out: the test makes one.
SETS = ["campaign.schedule.0.duration_s=1", "campaign.schedule.1.duration_s=30",
        "campaign.schedule.1.rate=10", "campaign.schedule.2.duration_s=1", "faults=[]",
        "campaign.drain_s=2"]  # fmt: skip
WAIT_S = 20.0  # for what the page shows: a poll is every 0.5 s, the circuit's cooldown 2 s


def answers(url: str) -> bool:
    """Locust's web app is up (the address is printed before it listens)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    run_dir, out = tmp_path / "run", tmp_path / "out.txt"
    args = [sys.executable, "-m", "loadtest.cli", "run", "default", "--web", "--workers", "2",
            "--out", str(run_dir)]  # fmt: skip
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [*args, *(a for s in SETS for a in ("--set", s))], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        found = re.compile(r"Locust web UI: (http://127\.0\.0\.1:\d+)/")
        assert wait_until(lambda: bool(found.search(out.read_text())), 60, step=0.1), (
            out.read_text()
        )
        match = found.search(out.read_text())
        assert match is not None
        base = match.group(1)
        assert wait_until(lambda: answers(base + "/failover/state"), 60, step=0.1), out.read_text()
        yield proc, base, run_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(90)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--no-proxy-server"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_tab_shows_the_circuit_and_starts_and_stops_a_fault(drill, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    proc, base, run_dir = drill
    # The page redraws its tables as it polls: what it shows is read in one script, and an
    # element found may be gone a moment later (then found again).
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))  # fmt: skip

    def server(name: str) -> list[str]:
        cells = browser.execute_script(
            "const r = document.querySelector(`#servers tr[data-server='${arguments[0]}']`);"
            "return r ? Array.from(r.cells, c => c.textContent) : [];", name)  # fmt: skip
        return list(cells)

    def circuit(name: str) -> str:
        cells = server(name)
        return cells[1] if cells else ""

    def accepted(name: str) -> int:
        cells = server(name)
        return int(cells[4]) if len(cells) > 4 and cells[4].isdigit() else 0

    def command_fault() -> tuple[str, str] | None:
        found = browser.execute_script(
            "for (const r of document.querySelectorAll('#faults tr[data-server=\"primary\"]'))"
            "  if (r.dataset.faultId && r.cells[2].textContent === 'command')"
            "    return [r.dataset.faultId, r.cells[3].textContent];"
            "return null;")  # fmt: skip
        return None if found is None else (str(found[0]), str(found[1]))

    browser.get(base + "/failover")
    wait.until(lambda _: circuit("primary") == "closed" and accepted("primary") >= 20)
    browser.save_screenshot(str(tmp_path / "1-closed.png"))

    Select(browser.find_element(By.ID, "start-server")).select_by_value("primary")
    Select(browser.find_element(By.ID, "start-kind")).select_by_value("down")
    duration = browser.find_element(By.ID, "start-duration")
    duration.clear()
    duration.send_keys("60")
    browser.find_element(By.ID, "start-button").click()
    wait.until(lambda _: (command_fault() or ("", ""))[1] == "active")
    wait.until(lambda _: circuit("primary") == "open")
    browser.save_screenshot(str(tmp_path / "2-open.png"))
    if target := os.environ.get("MAILDRILL_README_SCREENSHOT"):
        shutil.copy(tmp_path / "2-open.png", target)
    fault = command_fault()
    assert fault is not None
    fault_id = fault[0]

    stop = f'#faults tr[data-fault-id="{fault_id}"] button.stop'
    wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, stop).click() or True)
    wait.until(lambda _: (command_fault() or ("", ""))[1] == "done")
    wait.until(lambda _: circuit("primary") == "closed")
    browser.save_screenshot(str(tmp_path / "3-closed-again.png"))

    # Two Locust workers send: the master shows both their circuits.
    with urllib.request.urlopen(base + "/failover/state", timeout=5) as reply:
        shown = json.load(reply)
    assert {s["name"]: sum(s["circuits"].values()) for s in shown["servers"]} == {
        "primary": 2, "secondary": 2
    }  # fmt: skip

    # Locust's own UI has the tab too: the servers as its table.
    browser.get(base + "/?tab=failover")
    wait.until(lambda _: "Faults and timeline" in browser.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(tmp_path / "4-locust-tab.png"))

    proc.send_signal(signal.SIGINT)  # enough seen: the run stops, its journals and summary kept
    assert proc.wait(90) == EXIT_PARTIAL
    rows = [r for r in read_csv(run_dir / "faults-primary.csv") if r["fault_id"] == fault_id]
    assert [(r["kind"], r["state"], r["origin"]) for r in rows] == [
        ("down", "start", "command"), ("down", "stop", "command")
    ]  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    (window,) = summary["failovers"]
    assert (window["target"], window["kind"]) == ("primary", "down")
    started, stopped = (float(r["time"]) for r in rows)
    assert 0 < stopped - started < 60  # stopped by the click, not by its duration
    assert time.time() - started < 120
