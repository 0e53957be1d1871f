"""The Failover tab in a real browser (Debian's Chromium, headless, driven by selenium):
during a drill with two Locust workers (the tab on the master) it sees the primary's
circuit open while a fault is active, starts a fault with a click, sees it in the
timeline, stops it and sees the circuit close; the fault is journaled with `origin:
command` and is in the run's summary. Without `dns:` the tab offers no DNS faults; with it
(the bundled dns-switch, cut short) a records switch commanded from the tab's DNS form is
refused in one line when wrong, then journaled in faults-dns.csv, served in the DNS
server's answers (dns-queries.csv) for exactly its window, and followed by the senders as
summary.json's `dns` says (recounted here from the journals).

Screenshots go to the test's temporary directory; with MAILDRILL_README_SCREENSHOT=PATH
the one with the circuit open is also written there (the README's picture:
`MAILDRILL_README_SCREENSHOT=docs/failover-tab.png pytest tests/drills/test_failover_tab.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
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
from typing import Any

import pytest

from loadtest.cli import EXIT_PARTIAL
from tests.helpers import LATE_S, port_free_on, read_csv, wait_until

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
    with web_drill(tmp_path, "default", SETS, "--workers", "2") as started:
        yield started


@contextlib.contextmanager
def web_drill(
    tmp_path: Path, scenario: str, sets: list[str], *args: str
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`maildrill run SCENARIO --web ARGS --set SET...`, once its Failover tab answers: the
    process, the web UI's address, the run directory; interrupted on the way out."""
    run_dir, out = tmp_path / "run", tmp_path / "out.txt"
    cmd = [sys.executable, "-m", "loadtest.cli", "run", scenario, "--web", "--out", str(run_dir),
           *args, *(a for s in sets for a in ("--set", s))]  # fmt: skip
    with out.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
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
    # No dns: in the scenario: no DNS server, no DNS form.
    assert shown["dns"] is None
    assert browser.execute_script("return document.getElementById('dns').hidden") is True

    # Locust's own UI has the tab too: the servers as its table.
    browser.get(base + "/?tab=failover")
    wait.until(lambda _: "Faults and timeline" in browser.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(tmp_path / "4-locust-tab.png"))

    proc.send_signal(signal.SIGINT)  # enough seen: the run stops, its journals and summary kept
    assert proc.wait(90) == EXIT_PARTIAL
    # Stopped before its end: Locust's web mode does not wait its --autoquit (10 s) for a
    # last look at the UI (loadtest.locust_glue). Between its two log lines: that wait, if
    # any, after its stop (which waits for the workers: seconds when one is gone).
    assert autoquit_wait_s(run_dir) < 10.0
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


# The bundled dns-switch cut short: the relay is smtp.shop.test (TTL 1 s), its scheduled
# switch left out: the test commands one from the tab. Interrupted once seen through.
OLD, NEW, NAME, TTL = "127.0.0.11", "127.0.0.12", "smtp.shop.test", 1
DNS_FOR_S = 4  # several of the page's polls: the row is seen active on a loaded machine
SERVFAIL_MAX_S = 60  # stopped from the page once it deferred mail, long before this


def dns_sets(port: int) -> list[str]:
    return [*(f"servers.{i}.port={port}" for i in range(3)),
            "campaign.schedule=[{duration_s: 30, rate: 20}]", "campaign.drain_s=1", "users=2",
            f"dns={{zones: {{shop.test: {{smtp: {{A: {OLD}, ttl: {TTL}}}}}}}}}", "faults=[]",
            "slo=[]"]  # fmt: skip


def followed(attempts: list[dict[str, str]], at: float, until: float, new: str) -> dict[str, Any]:
    """One change of the relay's address by hand: per sender (a Locust process), its first
    attempt at the new address after its last at the old one."""
    after = [a for a in attempts if a["dns_name"] == NAME and a["addr"]
             and at <= float(a["start"]) < until]  # fmt: skip
    per_sender = []
    for worker in {a["worker"] for a in after}:
        mine = [a for a in after if a["worker"] == worker]
        last_old = max((float(a["start"]) for a in mine if a["addr"] != new), default=-math.inf)
        per_sender.append(min(float(a["start"]) for a in mine if a["addr"] == new
                              and float(a["start"]) > last_old))  # fmt: skip
    return {
        "first_follow_s": round(min(float(a["start"]) for a in after if a["addr"] == new) - at, 3),
        "last_follow_s": round(max(per_sender) - at, 3),
        "stale_attempts": sum(a["addr"] != new for a in after),
        "senders": len(per_sender),
    }


def autoquit_wait_s(run_dir: Path) -> float:
    """Seconds Locust waited between stopping the shape's test and its --autoquit (its
    log's first line of each: "The last worker went missing, stopping test" may follow)."""
    stamps = {}
    for line in (run_dir / "logs" / "locust.log").read_text().splitlines():
        for key, text in (("stop", "completed, stopping test"), ("quit", "--autoquit time")):
            if text in line and key not in stamps:  # the first: a worker's may follow
                stamp = line[1 : line.index("]")]
                stamps[key] = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + (
                    int(stamp[20:23]) / 1000
                )
    return stamps["quit"] - stamps["stop"]


def page_text(browser: Any, element_id: str) -> str:
    return str(browser.execute_script(
        "return document.getElementById(arguments[0]).textContent", element_id))  # fmt: skip


def most_accepted(browser: Any) -> int:
    """The most accepted attempts any server row of the page shows."""
    found = browser.execute_script(
        "return Math.max(0, ...Array.from(document.querySelectorAll('#servers tbody tr'),"
        " r => Number(r.cells[4].textContent) || 0));")  # fmt: skip
    return int(found)


def dns_rows(browser: Any) -> list[list[str]]:
    """The page's DNS faults in force: each row's fault id, then its cells."""
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#dns-faults tbody tr'),"
        " r => [r.dataset.faultId, ...Array.from(r.cells, c => c.textContent)]);")  # fmt: skip
    return [list(r) for r in rows]


def fill(browser: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def start_from_form(browser: Any, wait: Any) -> str:
    """Press the DNS form's button: the id of the fault started, from the reply the page
    shows (the last one's message cleared first, so this is this press's)."""
    from selenium.webdriver.common.by import By

    browser.execute_script("document.getElementById('dns-message').textContent = ''")
    browser.find_element(By.ID, "dns-button").click()
    wait.until(lambda _: page_text(browser, "dns-message").startswith("started "))
    message = page_text(browser, "dns-message")
    fault_id = message.split()[1]
    assert message == f"started {fault_id} on the DNS server"
    return fault_id


def deferred_by_dns(run_dir: Path) -> bool:
    """An attempt deferred by a failed lookup is in the journal (read as it is written)."""
    try:
        return any((a["outcome"], a["phase"]) == ("deferred", "dns")
                   for a in read_csv(run_dir / "attempts.csv"))  # fmt: skip
    except (OSError, TypeError, ValueError, KeyError):
        return False


def sent_to_old_after_stop(run_dir: Path, stops: int) -> bool:
    """An attempt at the old address begun after faults-dns.csv's last stop row, once it
    has `stops` of them (journals read as they are written: a last line half written is
    no answer yet)."""
    try:
        stopped = [float(r["time"]) for r in read_csv(run_dir / "faults-dns.csv")
                   if r["state"] == "stop"]  # fmt: skip
        attempts = read_csv(run_dir / "attempts.csv")
        return len(stopped) == stops and any(
            a["addr"] == OLD and float(a["start"]) > stopped[-1] for a in attempts
        )
    except (OSError, TypeError, ValueError):
        return False


def test_a_dns_switch_commanded_from_the_tab_is_journaled_served_and_followed(browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))  # fmt: skip
    started = web_drill(tmp_path, "dns-switch", dns_sets(port_free_on(OLD, NEW)))
    with started as (proc, base, run_dir):
        browser.get(base + "/failover")
        wait.until(lambda _: most_accepted(browser) >= 5)
        assert browser.find_element(By.ID, "dns-kind").get_attribute("value") == "records"
        assert browser.find_element(By.ID, "dns-name").get_attribute("value") == NAME
        assert not browser.find_element(By.ID, "dns-names").is_displayed()  # answer faults'

        # Bad input: one line under the form, nothing started.
        fill(browser, "dns-address", "not-an-ip")
        fill(browser, "dns-ttl", str(TTL))
        fill(browser, "dns-duration", str(DNS_FOR_S))
        browser.find_element(By.ID, "dns-button").click()
        wait.until(lambda _: page_text(browser, "dns-message") != "")
        assert page_text(browser, "dns-message") == (
            f"records on dns: records: {NAME} A 'not-an-ip': not an IPv4 address"
        )

        fill(browser, "dns-address", NEW)
        fault_id = start_from_form(browser, wait)
        wait.until(lambda _: [r[0] for r in dns_rows(browser) if r[3] == "active"] == [fault_id])
        (row,) = dns_rows(browser)
        assert row[1:5] == ["records", "command", "active", f"{NAME} → A {NEW} (TTL {TTL} s)"]
        browser.save_screenshot(str(tmp_path / "dns-active.png"))
        wait.until(lambda _: not dns_rows(browser))  # its duration passed: no longer in force

        # The senders back at the old address once their cached answer expired.
        assert wait_until(lambda: sent_to_old_after_stop(run_dir, 1), WAIT_S, step=0.2)

        # An answer fault scoped by name and type: the name's A lookups fail for a while.
        Select(browser.find_element(By.ID, "dns-kind")).select_by_value("servfail")
        assert browser.find_element(By.ID, "dns-names").is_displayed()
        assert not browser.find_element(By.ID, "dns-address").is_displayed()  # records' own
        fill(browser, "dns-names", NAME)
        fill(browser, "dns-types", "A")
        fill(browser, "dns-duration", str(SERVFAIL_MAX_S))
        servfail_id = start_from_form(browser, wait)
        wait.until(lambda _: [r[0] for r in dns_rows(browser) if r[3] == "active"] == [servfail_id])
        (row,) = dns_rows(browser)
        assert row[1:5] == ["servfail", "command", "active", f"{NAME} (A)"]
        # Once it deferred mail (a cached answer expired inside it), stopped from its row.
        assert wait_until(lambda: deferred_by_dns(run_dir), WAIT_S, step=0.2)
        browser.find_element(By.CSS_SELECTOR, f'#dns-faults tr[data-fault-id="{servfail_id}"] '
                             "button.stop").click()  # fmt: skip
        wait.until(lambda _: page_text(browser, "dns-message") == f"stopped {servfail_id} on dns")
        wait.until(lambda _: not dns_rows(browser))
        assert wait_until(lambda: sent_to_old_after_stop(run_dir, 2), WAIT_S, step=0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == EXIT_PARTIAL

    t0 = json.loads((run_dir / "run.json").read_text())["t0"]
    faults = read_csv(run_dir / "faults-dns.csv")
    assert [(r["fault_id"], r["kind"], r["state"], r["origin"]) for r in faults] == [
        (fault_id, "records", "start", "command"), (fault_id, "records", "stop", "command"),
        (servfail_id, "servfail", "start", "command"), (servfail_id, "servfail", "stop", "command"),
    ]  # fmt: skip
    assert json.loads(faults[0]["params"])["records"] == {NAME: {"A": NEW, "ttl": TTL}}
    scoped = json.loads(faults[2]["params"])
    assert (scoped["names"], scoped["types"]) == ([NAME], ["A"])
    start, stop, failing, answering = (float(r["time"]) for r in faults)
    assert stop - start == pytest.approx(DNS_FOR_S, abs=1e-3)  # its duration, on its clock
    assert 0 < answering - failing < SERVFAIL_MAX_S  # stopped by the click, not its duration

    # What the DNS server answered for the name, each question by the fault's window.
    queries = [
        q for q in read_csv(run_dir / "dns-queries.csv") if (q["name"], q["type"]) == (NAME, "A")
    ]
    switched = [q for q in queries if start <= float(q["time"]) < stop]
    failed = [q for q in queries if failing <= float(q["time"]) < answering]
    zone = [q for q in queries if q not in switched and q not in failed]
    assert switched
    assert failed
    assert zone
    assert {(q["rcode"], q["answers"], q["ttl"], q["fault_id"]) for q in switched} == {
        ("NOERROR", NEW, str(TTL), fault_id)
    }  # fmt: skip
    assert {(q["rcode"], q["answers"], q["fault_id"]) for q in failed} == {
        ("SERVFAIL", "", servfail_id)
    }  # fmt: skip
    assert {(q["rcode"], q["answers"], q["fault_id"]) for q in zone} == {("NOERROR", OLD, "")}

    summary = json.loads((run_dir / "summary.json").read_text())
    # In the failover table as DNS server windows, as scheduled DNS faults are.
    assert [(w["target"], w["kind"], w["onset_s"], w["cleared_s"], w["onset_source"])
            for w in summary["failovers"]] == [
        ("dns", "records", round(start - t0, 6), round(stop - t0, 6), "DNS server journal"),
        ("dns", "servfail", round(failing - t0, 6), round(answering - t0, 6), "DNS server journal"),
    ]  # fmt: skip
    dns = summary["dns"]
    attempts = read_csv(run_dir / "attempts.csv")
    change, switch_back = dns["changes"]
    for figures, edge, at, until, new in (
        (change, "change", start, stop, NEW), (switch_back, "switch_back", stop, math.inf, OLD)
    ):  # fmt: skip
        assert (figures["fault_id"], figures["edge"]) == (fault_id, edge)
        assert figures["at_s"] == round(at - t0, 3)
        expected = followed(attempts, at, until, new)
        assert {k: figures[k] for k in expected} == expected, figures
        assert figures["last_follow_s"] <= TTL + LATE_S  # one TTL and the next send
    assert dns["stale_attempts"] == change["stale_attempts"] + switch_back["stale_attempts"]
    # The mail the failed lookups deferred: attempts at phase dns begun in the servfail's
    # window (one begun a moment before it, its lookup asked just after, is the only other).
    deferred = [a for a in attempts if (a["outcome"], a["phase"]) == ("deferred", "dns")]
    inside = [a for a in deferred if failing <= float(a["start"]) <= answering]
    assert inside
    assert all(failing - LATE_S <= float(a["start"]) <= answering for a in deferred)
    assert dns["deferred"] == len({a["msg_id"] for a in deferred})
    windows = [(w["fault_id"], w["kind"], w["onset_s"], w["cleared_s"], w["deferred_messages"],
                w["deferred_attempts"]) for w in dns["faults"]]  # fmt: skip
    assert windows == [
        (fault_id, "records", round(start - t0, 3), round(stop - t0, 3), 0, 0),
        (servfail_id, "servfail", round(failing - t0, 3), round(answering - t0, 3),
         len({a["msg_id"] for a in inside}), len(inside)),
    ]  # fmt: skip
