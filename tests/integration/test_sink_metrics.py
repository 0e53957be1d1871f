"""A sink's `GET /metrics` (sinks/metrics.py) over real HTTP, against its own journals.

Every figure is recounted from the receipts and refusals journals with csv.DictReader
(tests.helpers.read_csv), never from the sink's counters.
"""

from __future__ import annotations

import smtplib
import urllib.error
import urllib.request
from collections import Counter

import pytest

from tests.helpers import Scrape, message, read_csv, wait_until

# Half the MAILs refused for good, a quarter of the RCPTs deferred: both classes appear.
BEHAVIOURS = [
    {"kind": "reject", "stage": "mail", "code": 550, "enhanced": "5.7.1", "probability": 0.5},
    {"kind": "reject", "stage": "rcpt", "code": 451, "enhanced": "4.3.0", "probability": 0.25},
]


def send_some(sinks, name: str, count: int) -> None:
    with sinks.smtp(name) as client:
        client.ehlo()
        for i in range(count):
            try:
                client.sendmail("a@example.com", ["b@example.com"], message(f"{name}-{i}"))
            except smtplib.SMTPException:
                client.rset()


def test_metrics_count_what_the_journals_hold(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": BEHAVIOURS}]})
    send_some(sinks, "mx", 30)
    url = sinks.control_url("mx", "/metrics")
    assert wait_until(lambda: Scrape.of(url).value("maildrill_sink_sessions_open") == 0, 5)
    page = Scrape.of(url)  # no token: a scraper has none
    receipts = read_csv(sinks.journal_dir / "receipts-mx.csv")
    refusals = read_csv(sinks.journal_dir / "refusals-mx.csv")
    classes = Counter(f"{r['code'][0]}xx" for r in refusals)
    assert classes["4xx"] > 0  # the test sees both classes
    assert classes["5xx"] > 0
    assert page.by("maildrill_sink_refusals_total", "sink", "code_class") == {
        ("mx", "4xx"): classes["4xx"],
        ("mx", "5xx"): classes["5xx"],
    }
    assert page.value("maildrill_sink_receipts_total", sink="mx", outcome="accepted") == len(
        receipts
    )
    assert page.value("maildrill_sink_receipts_total", outcome="dropped") == 0
    assert page.value("maildrill_sink_received_bytes_total") == sum(
        int(r["size"]) for r in receipts
    )
    assert page.value("maildrill_sink_sessions_total", sink="mx") == 1
    assert page.value("maildrill_sink_listening", sink="mx") == 1


def test_metrics_show_faults_in_force_by_kind(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    url = sinks.control_url("mx", "/metrics")
    assert "maildrill_sink_faults_active" not in Scrape.of(url).names()  # none yet
    status, fault = sinks.control("mx", "POST", "/faults", {"kind": "down"})
    assert status == 201
    page = Scrape.of(url)
    assert page.by("maildrill_sink_faults_active", "kind") == {("down",): 1}
    assert page.value("maildrill_sink_listening") == 0
    sinks.control("mx", "DELETE", f"/faults/{fault['id']}")
    page = Scrape.of(url)
    assert "maildrill_sink_faults_active" not in page.names()
    assert page.value("maildrill_sink_listening") == 1


def test_only_metrics_is_open_without_the_token(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(sinks.control_url("mx", "/status"), timeout=5)
    refused.value.close()
    assert refused.value.code == 401
    request = urllib.request.Request(sinks.control_url("mx", "/metrics"), method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 401  # only a GET is open


def test_backup_mx_queue_depth_while_its_upstream_is_down(start_sinks, tmp_path):
    primary = start_sinks({"sinks": [{"name": "primary"}]}, journal_dir=tmp_path / "j")
    backup = start_sinks(
        {
            "sinks": [
                {
                    "name": "backup",
                    "mode": "backup-mx",
                    "upstream": {"port": primary.port("primary"), "timeout_s": 1},
                    "forward_backoff_s": 0.1,
                    "forward_max_backoff_s": 0.3,
                }
            ]
        },
        journal_dir=tmp_path / "j",
    )  # a second sink set in this process: its registry is its own
    status, fault = primary.control("primary", "POST", "/faults", {"kind": "down"})
    assert status == 201
    send_some(backup, "backup", 7)
    url = backup.control_url("backup", "/metrics")
    queued = read_csv(tmp_path / "j" / "receipts-backup.csv")
    assert len(queued) == 7
    depth = ("maildrill_sink_relay_queue_depth", "sink", "upstream")
    upstream = f"127.0.0.1:{primary.port('primary')}"
    assert Scrape.of(url).by(*depth) == {("backup", upstream): 7}
    assert (
        "maildrill_sink_relay_queue_depth"
        not in Scrape.of(primary.control_url("primary", "/metrics")).names()
    )
    primary.control("primary", "DELETE", f"/faults/{fault['id']}")
    assert wait_until(lambda: Scrape.of(url).by(*depth) == {("backup", upstream): 0}, 10, 0.05)
    forwarded = read_csv(tmp_path / "j" / "receipts-primary.csv")
    assert Scrape.of(url).value("maildrill_sink_relay_forwarded_total") == len(forwarded) == 7
