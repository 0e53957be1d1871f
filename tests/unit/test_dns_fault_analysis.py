"""faults-dns.csv in the analysis: the DNS fault's window is read like a sink's (onset and
clear from the journal, what the mail did meanwhile), never as a server that failed over
in no time, and `dns` is not taken for a sink that received nothing."""

from __future__ import annotations

from pathlib import Path

from loadtest.analysis import summary as summary_mod
from loadtest.analysis.loaded import RunDir
from tests.runs import RunBuilder

SCENARIO = """\
name: dns-window
servers:
  - {name: primary, priority: 10, local: true, host: 127.0.0.1, port: 2525}
  - {name: secondary, priority: 20, local: true, host: 127.0.0.1, port: 2526}
campaign:
  schedule: [{duration_s: 10, rate: 2}]
dns:
  zones:
    shop.test: {smtp: {A: 127.0.0.11, ttl: 5}}
faults:
  - {at: 4, target: dns, kind: servfail, duration: 3}
"""


def built(run_dir: Path, *, served: bool = True) -> Path:
    """20 messages at 2/s, all accepted by the primary but none from 4.0 s to 7.0 s (the
    DNS server answered SERVFAIL then); the DNS fault journaled from 4.0 to 7.0 s."""
    run = RunBuilder("r1")
    k = 0
    for i in range(20):
        at = i * 0.5
        if 4.0 <= at < 7.0:
            continue
        run.attempt(k, "primary", at, at, at + 0.01)
        run.receipt(k, "primary", at + 0.005)
        k += 1
    run.receipts.setdefault("secondary", [])
    run.fault("dns", "servfail", "start", 4.0)
    run.fault("dns", "servfail", "stop", 7.0)
    run.write(run_dir, SCENARIO, planned=k)
    if served:
        (run_dir / "dns").mkdir()  # the zones a DNS server served
    return run_dir


def test_a_dns_faults_window_is_measured_without_a_target_server(tmp_path: Path) -> None:
    run = RunDir.load(built(tmp_path / "run"))
    assert run.journal_servers == ("primary", "secondary")  # dns is no sink
    summary = summary_mod.summarise(run)
    [window] = summary.failovers
    assert (window.target, window.kind) == ("dns", "servfail")
    assert (window.onset_s, window.cleared_s) == (4.0, 7.0)
    assert window.onset_source == "DNS server journal"
    # Against a server named dns these read as a failover at once: not measured here.
    assert (window.detection_s, window.failover_s, window.failback_s) == (None, None, None)
    # What the mail did meanwhile is: no message accepted from 3.51 s to 7.01 s.
    assert window.longest_gap_s is not None
    assert abs(window.longest_gap_s - 3.0) < 0.02
    assert window.phases["during"].accepted == 0
    assert window.phases["after"].accepted == 6  # 7.0 to 9.5 s


def test_a_sink_named_dns_in_a_run_without_dns_is_still_a_sink(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    built(run_dir, served=False)
    (run_dir / "scenario.yaml").unlink()  # no scenario to say whether DNS was served
    run = RunDir.load(run_dir)
    assert "dns" in run.journal_servers
    [window] = summary_mod.summarise(run).failovers
    assert window.onset_source == "sink journal"
    assert window.failover_s == 3.01  # as a sink's: the primary's first accepted after it
