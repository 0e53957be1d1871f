"""The `maildrill` command: run, worker, capacity, sinks, scenarios, validate, report,
compare, check, plan, sink."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import sinks.cli
from loadtest import limits
from loadtest.analysis import junit, view
from loadtest.analysis.dns_windows import ONSET_SOURCE as DNS_ONSET
from loadtest.analysis.rundir import RunDirError
from loadtest.analysis.summary_model import JournalProblems, Summary
from loadtest.capacity.search import SearchSettings
from loadtest.cli_args import metrics_args, port_number, server_args
from loadtest.distributed import (
    DEFAULT_PORT,
    DEFAULT_WAIT_S,
    AddressError,
    RemoteWorkers,
    bind_problem,
    loopback_targets_problem,
    parse_endpoint,
    parse_wait,
)
from loadtest.limits import MAX_WORKERS
from loadtest.overrides import OverrideError
from loadtest.scenario import Scenario, ScenarioError
from maildrill.netaddr import is_loopback
from maildrill.numbers import finite_float
from maildrill.paths import UnsafePath, inside

if TYPE_CHECKING:
    from loadtest.dns_route import Located

EXIT_OK, EXIT_SLO_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# An interrupted run's SLOs are judged on part of it: never a pass, and not the same as a
# failed SLO either, so a CI script can tell the two apart (1 stays "did not pass").
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130  # Ctrl-C outside a run (a run handles it itself: a partial summary)


def fail(message: str) -> int:
    print(f"maildrill: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


class _Parser(argparse.ArgumentParser):
    """A usage mistake is bad input like any other: one line on stderr and exit 2.

    argparse would print the whole usage block first; the one line names the mistake and
    where the usage is.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", help="file or bundled name (default: default)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario value, e.g. --set users=5 (repeatable)",
    )
    parser.add_argument("--seed", type=int, help="campaign seed")
    parser.add_argument("--workers", type=int, help="Locust worker processes (0: one process)")


def _check_dns_args(check: argparse.ArgumentParser) -> None:
    dns = check.add_argument_group(
        "DNS",
        "check --dns DOMAIN [SCENARIO]: the domain's MX, SPF (and its 10-lookup limit), DKIM "
        "keys, DMARC, and each sending server's PTR, as providers check them after a failover",
    )
    dns.add_argument("--dns", metavar="DOMAIN", help="check this sending domain's DNS")
    dns.add_argument(
        "--resolver",
        metavar="HOST:PORT",
        help="ask this DNS server (loopback unless allow_remote); default: serve the "
        "scenario's dns: zones for the check",
    )
    for flag, metavar, what in (
        ("--source", "NAME=ADDRESS", "the address a server sends from"),
        ("--helo", "NAME=HOST", "the name a server gives in EHLO"),
        ("--dkim", "NAME=SELECTOR[:DOMAIN]", "a DKIM selector a server signs with"),
        ("--dkim-key", "NAME=FILE", "the PEM key a server signs with (private or public)"),
    ):
        dns.add_argument(
            flag, action="append", default=[], metavar=metavar, help=f"{what} (repeatable)"
        )


def _junit_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write the verdict as JUnit XML (a test case per SLO and journal problem)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from loadtest.analysis import summary as summary_mod
    from loadtest.bundled import scenario_path
    from loadtest.orchestrate import Drill, SetupError, prepare

    consent = _Consent(args.yes)
    try:
        workers = _remote_workers(args)
        path = scenario_path(args.scenario)
        # Workers elsewhere are the run's workers: none is started here.
        raw, scenario = prepare(
            path,
            args.set,
            args.seed,
            0 if workers else args.workers,
            remote_workers=workers is not None,
            consent=consent.resolver,
        )
    except (ScenarioError, OverrideError, AddressError) as exc:
        return fail(str(exc))
    remote = _sends_outside(scenario)
    if problem := consent.sending(scenario.name, remote):
        return fail(problem)
    if workers is not None and (problem := bind_problem(workers.bind, scenario.allow_remote)):
        return fail(problem)
    targets = [(s.name, s.host) for s in scenario.servers]
    if workers is not None and (problem := loopback_targets_problem(workers.bind, targets)):
        return fail(problem)
    if workers is not None and not workers.bind.loopback:
        listener = [f"the Locust master on {workers.bind}, for workers on other machines"]
        if not _confirmed(listener, args.yes):
            return fail(f"--master-bind {workers.bind} listens outside this machine: "
                        "pass --yes to confirm")  # fmt: skip
    run_id = f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        run_dir = args.out or inside(Path("reports"), run_id)  # the name is validated; twice
    except UnsafePath as exc:
        return fail(str(exc))
    problem = _unwritable(run_dir) or _too_little_space(
        run_dir, scenario.campaign.build_schedule().total
    )
    if problem:
        return fail(problem)
    if args.junit is not None and (problem := junit.unwritable(args.junit)):
        return fail(problem)
    print(f"maildrill: {scenario.name}: {scenario.description or path}", file=sys.stderr)
    print(f"maildrill: run directory {run_dir}", file=sys.stderr)
    metrics = (args.metrics_port, args.metrics_linger)
    drill = Drill(
        scenario,
        raw,
        run_dir,
        run_id,
        web=args.web,
        metrics=metrics,
        remote=workers,
        yes=bool(remote),  # all of it confirmed above, or nothing needed it
    )
    try:
        drill.run()
    except SetupError as exc:
        return fail(str(exc))
    result = summary_mod.write(run_dir)
    _print_summary(result, run_dir)
    return _write_junit(args.junit, result) or _exit_code(result, run_dir)


def _remote_workers(args: argparse.Namespace) -> RemoteWorkers | None:
    """--master-bind ADDR[:PORT] --expect-workers N [--workers-wait S], all or none."""
    if args.master_bind is None:
        if args.expect_workers is not None or args.workers_wait is not None:
            raise AddressError("--expect-workers and --workers-wait go with --master-bind")
        return None
    if args.expect_workers is None:
        raise AddressError("--master-bind needs --expect-workers N (workers started elsewhere)")
    if not 1 <= args.expect_workers <= MAX_WORKERS:
        raise AddressError(f"--expect-workers {args.expect_workers}: 1 to {MAX_WORKERS}")
    if args.workers is not None:
        raise AddressError("--workers starts local workers; with --master-bind, workers "
                           "come from elsewhere (--expect-workers)")  # fmt: skip
    bind = parse_endpoint(args.master_bind, "--master-bind", bind=True)
    wait = DEFAULT_WAIT_S if args.workers_wait is None else args.workers_wait
    return RemoteWorkers(bind, args.expect_workers, parse_wait(str(wait), "--workers-wait"))


def cmd_worker(args: argparse.Namespace) -> int:
    """`maildrill worker --master HOST:PORT` (loadtest.worker_cmd)."""
    from loadtest import worker_cmd

    try:
        master = parse_endpoint(args.master, "--master", bind=False)
        wait = parse_wait(args.wait, "--wait")
    except AddressError as exc:
        return fail(str(exc))
    # The master's scenario may name servers outside loopback (allow_remote): like the
    # targets of `maildrill run`, they need this host's own yes (loadtest.worker_consent).
    anywhere = [f"any server outside loopback that the master at {master} names"]
    yes = _confirmed(anywhere, args.yes)
    return worker_cmd.run(master, wait, yes=yes, secrets=args.allow_secrets)


def cmd_capacity(args: argparse.Namespace) -> int:
    """Capacity curves by adaptive step search (loadtest.capacity): exit 0 when every
    curve's knee was found within the precision, 1 when one was not, 2 bad input or a step
    that could not start, 3 interrupted."""
    from loadtest.bundled import scenario_path
    from loadtest.capacity import report as capacity_report
    from loadtest.capacity.driver import CapacityRun, Interrupted
    from loadtest.capacity.search import Ending
    from loadtest.orchestrate import SetupError, prepare

    consent = _Consent(args.yes)
    try:
        path = scenario_path(args.scenario)
        raw, scenario = prepare(path, args.set, args.seed, args.workers, consent=consent.resolver)
        servers = _capacity_servers(scenario, args.server)
        settings = _capacity_settings(scenario, args)
    except (ScenarioError, OverrideError, ValueError) as exc:
        return fail(str(exc))
    # A server measured alone is on loopback, but the `all` curve's steps route as the
    # scenario does, and a name is looked up as the senders look it up: asked as in `run`.
    remote = _sends_outside(scenario)
    if problem := consent.sending(scenario.name, remote):
        return fail(problem)
    run_id = f"{scenario.name}-capacity-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out_dir = args.out or inside(Path("reports"), run_id)
    except UnsafePath as exc:
        return fail(str(exc))
    if (out_dir / "steps").exists():  # a step's journals must be its own
        return fail(f"{out_dir} already holds a capacity run: choose another --out")
    if problem := _unwritable(out_dir):
        return fail(problem)
    cap = CapacityRun(raw, scenario, str(path), out_dir, settings, args.step_s, servers,
                      say=lambda line: print(f"maildrill: {line}", file=sys.stderr),
                      yes=bool(remote))  # fmt: skip
    curves = len(cap.curves())
    print(f"maildrill: {scenario.name}: capacity of {', '.join(n for n, _ in cap.curves())}: "
          f"at most {settings.max_steps} steps of {args.step_s:g} s per curve, up to "
          f"{settings.max_rate:g} msgs/s", file=sys.stderr)  # fmt: skip
    print(f"maildrill: run directory {out_dir} ({curves} curves)", file=sys.stderr)
    try:
        result = cap.run(on_curve=lambda rep: capacity_report.write(out_dir, rep))
    except Interrupted:
        print(f"maildrill: interrupted; partial capacity report in {out_dir}", file=sys.stderr)
        return EXIT_PARTIAL
    except (SetupError, ScenarioError) as exc:
        return fail(f"{exc} (capacity so far in {out_dir})")
    for c in result.curves:
        print(f"{c.name}: knee {c.knee_msgs_per_s} msgs/s, first unstable "
              f"{c.first_unstable_msgs_per_s} ({c.failure}), max stable delivered "
              f"{c.max_stable_msgs_per_s} msgs/s; {capacity_report.ending(result, c)}, "
              f"{len(c.steps)} steps")  # fmt: skip
    print(f"Report: {out_dir / 'capacity.md'}")
    found = all(c.ending is Ending.CONVERGED for c in result.curves)
    return EXIT_OK if found else EXIT_SLO_FAILED


def _capacity_servers(scenario: Scenario, named: list[str]) -> list[str]:
    """The servers measured alone: those named, or else every local one; loopback only."""
    known = {s.name: s for s in scenario.servers}
    for name in named:
        if name not in known:
            raise ValueError(f"--server {name}: no such server (have: {', '.join(known)})")
    chosen = named or [s.name for s in scenario.servers if s.local]
    if not chosen:
        raise ValueError(f"{scenario.name}: no local server to measure; name one with --server")
    remote = [n for n in chosen if not known[n].local and not is_loopback(known[n].host)]
    if remote:
        raise ValueError(f"capacity steps run on loopback only: {', '.join(remote)} is not")
    return list(dict.fromkeys(chosen))


def _capacity_settings(scenario: Scenario, args: argparse.Namespace) -> SearchSettings:
    """The search's settings: flags, else from the scenario's schedule (its first and its
    highest rate), so a capacity run never offers more than its scenario does unless told."""
    stages = scenario.campaign.build_schedule().stages
    rates = [r for st in stages for r in (st.rate, st.final_rate) if r > 0]
    start = args.start_rate if args.start_rate is not None else (rates[0] if rates else 10.0)
    top = args.max_rate if args.max_rate is not None else max([start, *rates])
    if args.step_s <= 0:
        raise ValueError("--step-s must be > 0")
    if top > limits.MAX_RATE:
        raise ValueError(f"--max-rate {top:g}: at most {limits.MAX_RATE} msgs/s")
    return SearchSettings(start_rate=start, factor=args.factor, precision=args.precision,
                          max_rate=top, min_rate=min(1.0, start),
                          max_steps=args.max_steps)  # fmt: skip


def _write_junit(path: Path | None, result: Summary) -> int:
    """The JUnit file, when asked for (`--junit`): 0, or 2 when it cannot be written."""
    if path is None:
        return EXIT_OK
    try:
        junit.write(path, result)
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror}")
    return EXIT_OK


def _exit_code(result: Summary, run_dir: Path) -> int:
    """0 or 1 by the SLOs; 2 for a run stopped because a fault did not start; 3 for an
    interrupted (partial) run, whatever its SLOs say."""
    aborted = result.harness.aborted_by
    if aborted:
        return fail(f"{aborted}: the drill did not run as written (journals kept in {run_dir})")
    if result.partial:
        return EXIT_PARTIAL
    return EXIT_OK if result.slo.passed else EXIT_SLO_FAILED


def _sends_outside(scenario: Scenario) -> list[str]:
    """What the scenario's load may reach outside this machine, each named for a person to
    confirm (`maildrill run` and `maildrill capacity` alike); empty: loopback only."""
    remote = [
        f"{s.name} {s.host}:{s.port}"
        for s in scenario.servers
        if not is_loopback(s.host) and not scenario.dns_named(s)  # its answers are checked
    ]
    if scenario.resolver is not None:  # it may answer with any address: a yes, even on loopback
        remote.append(f"any server the resolver {scenario.resolver.text} names")
    elif scenario.allow_remote:  # the answers of the run's DNS are then not held to loopback
        remote += [
            f"{s.name} {s.host} (its addresses from the dns: zones)"
            for s in scenario.servers
            if scenario.dns_named(s)
        ]
    return remote + _relays_outside(scenario)


def _relays_outside(scenario: Scenario) -> list[str]:
    """The backup MXs and proxies that forward to an address outside loopback (allowed by
    `allow_remote`): the mail they queue or pass on leaves this machine."""
    return [
        f"{s.name}'s sink relaying to {up.host}:{up.port}"
        for s in scenario.servers
        if (up := s.sink.upstream_address) is not None and not is_loopback(up.host)
    ]


def _listeners_outside(scenario: Scenario) -> list[str]:
    """The local sinks listening on an address outside loopback (allowed by `allow_remote`):
    `maildrill sinks` opens them to other machines."""
    return [f"{s.name}'s sink listening on {s.host}" for s in scenario.servers
            if s.local and not is_loopback(s.host)]  # fmt: skip


class _Consent:
    """A person's yes (`--yes`, or y at the prompt) to load that leaves this machine, asked
    once per thing: first for a named resolver, before its MX sets are asked of it as the
    file loads (`resolver`), then for the rest of what the load reaches (`sending`)."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.confirmed: list[str] = []

    def resolver(self, text: str) -> None:
        """loadtest.resolver_mx's consent: raises ValueError to refuse."""
        what = f"any server the resolver {text} names"
        if not _confirmed([what], self.yes):
            raise ValueError(f"resolver {text} is asked for the MX sets and the senders "
                             f"send to {what}: pass --yes to confirm")  # fmt: skip
        self.confirmed.append(what)

    def sending(self, name: str, remote: list[str]) -> str | None:
        """The one-line refusal, or None once everything in `remote` is confirmed."""
        unasked = [what for what in remote if what not in self.confirmed]
        if unasked and not _confirmed(unasked, self.yes):
            return (f"{name} reaches outside this machine ({', '.join(unasked)}): "
                    "pass --yes to confirm")  # fmt: skip
        self.confirmed += unasked
        return None


def _confirmed(remote: list[str], yes: bool) -> bool:
    """Remote targets (allowed by the scenario) still need a yes from a person."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    print("maildrill: this run sends real SMTP traffic to:", file=sys.stderr)
    for target in remote:
        print(f"  {target}", file=sys.stderr)
    answer = input("send mail to these servers? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


# Journal rows per message (attempts, receipts, refusals) run to about a kilobyte; the
# report, plots and Locust's CSVs add a few megabytes.
BYTES_PER_MESSAGE = 1024
REPORT_BYTES = 20 * 1024 * 1024


def _too_little_space(run_dir: Path, planned: int) -> str | None:
    need = planned * BYTES_PER_MESSAGE + REPORT_BYTES
    free = shutil.disk_usage(run_dir).free
    if free < need:
        return (
            f"{run_dir}: only {free / 1e6:.1f} MB free, this run needs about "
            f"{need / 1e6:.0f} MB for its journals and report"
        )
    return None


def _unwritable(run_dir: Path) -> str | None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"x" * 65536)
        probe.unlink()
    except OSError as exc:
        return f"cannot write to {run_dir}: {exc.strerror}"
    return None


def _print_summary(result: Summary, run_dir: Path) -> None:
    m = result.messages
    lat = result.latency_ms
    if result.received is not None:
        _print_received(result)
    else:
        print(
            f"\nmessages: planned {m.planned}, accepted {m.accepted}, failed {m.failed}, "
            f"lost {m.lost}, duplicates {m.duplicates}, phantom {m.phantom}, "
            f"not sent {m.not_sent}"
            + (f", refused downstream {m.refused_downstream}" if m.refused_downstream else "")
        )
    if view.recipients(result) is not None:  # only where counting per recipient differs
        r = result.recipients
        print(
            f"recipients: addressed {r.addressed}, accepted {r.accepted}, delivered "
            f"{r.delivered}, lost {r.lost}, duplicated {r.duplicated}, stranded {r.stranded}"
        )
    for line in journal_problem_lines(result.journal_problems):
        print(line)
    b = result.bounces
    if b.hard or b.soft or b.suppressed:
        print(
            f"bounces: {b.hard} hard, {b.soft} soft of {b.attempted} recipients "
            f"(rate {b.rate}); suppressed {b.suppressed} recipients, "
            f"{m.suppressed} whole messages"
        )
    if result.received is None:
        print(
            f"throughput: mean {result.throughput.mean_msgs_per_s} msgs/s, "
            f"peak {result.throughput.peak_msgs_per_s}; latency p50 {lat.p50} ms, "
            f"p95 {lat.p95} ms, p99 {lat.p99} ms"
        )
    waiting = result.backlog
    if waiting.peak is not None:
        print(
            f"backlog: peak {waiting.peak} messages due and not yet accepted at "
            f"{waiting.peak_at_s} s; last message accepted at {waiting.completion_s} s"
            + (f", {waiting.left_at_end} never" if waiting.left_at_end else "")
        )
    for line in view.auth_lines(result):
        print(line)
    if len(result.streams) > 1:  # one stream: the lines above say it all
        for name, s in result.streams.items():
            print(
                f"stream {name}: accepted {s.accepted} of {s.planned}, failed {s.failed}, "
                f"lost {s.lost}; response time p95 {s.response_time_ms.p95} ms, "
                f"lateness p95 {s.lateness_ms.p95} ms"
            )
    for f in result.failovers:
        if f.measured_from == "receipts":
            gaps = ", ".join(f"{k} {v} s" for k, v in f.longest_gap_by_server_s.items())
            print(
                f"fault {f.kind} on {f.target} at {f.onset_s:.2f} s: first receipt elsewhere "
                f"after {f.failover_s} s, first receipt back after {f.failback_s} s, "
                f"longest gap {f.longest_gap_s} s (per server: {gaps})"
            )
            continue
        if f.onset_source == DNS_ONSET:  # no server is its target: what the mail did
            print(
                f"fault {f.kind} on {f.target} at {f.onset_s:.2f} s (the run's DNS server): "
                f"recovery {f.recovery_s} s, longest gap {f.longest_gap_s} s"
            )
            continue
        print(
            f"fault {f.kind} on {f.target} at {f.onset_s:.2f} s: "
            f"detection {f.detection_s} s, failover {f.failover_s} s, "
            f"failback {f.failback_s} s, recovery {f.recovery_s} s"
        )
        interval = result.probes.interval_ms
        if interval:
            noticed = f.monitor_detection_s
            print(
                f"  health probes every {interval:g} ms: "
                + (
                    "never saw it fail"
                    if noticed is None
                    else f"noticed after {noticed} s, "
                    f"healthy again {f.monitor_recovery_s} s after it cleared"
                )
            )
    for flag in (result.preflight.flags if result.preflight else None) or []:
        print(f"pre-flight flag: {flag.message}")
    for check in result.slo.checks:
        verdict = "PASS" if check.passed else "FAIL"
        note = f", {check.note}" if check.note else ""
        print(f"  {verdict}  {check.rule}  (measured {check.value}{note})")
    verdict = "SLOs " + ("PASSED" if result.slo.passed else "FAILED")
    if result.harness.aborted_by:
        verdict = "RUN FAILED: a fault did not start; SLOs not judged"
    elif result.partial:
        why = result.harness.interrupted_by
        cause = f"interrupted by {why}" if why else "interrupted or never started"
        verdict = f"PARTIAL RUN ({cause}): {verdict} on partial data, not a pass"
    cap = result.capacity
    if cap.steps:
        print(
            f"capacity: knee {cap.knee_msgs_per_s} msgs/s, "
            f"max stable {cap.max_stable_msgs_per_s} msgs/s"
        )
    report = run_dir / "report.html"
    print(f"{verdict}. Report: {report if report.exists() else run_dir}")


def _print_received(result: Summary) -> None:
    """The printed summary of a run without the sender's journal: receipts, in words."""
    from loadtest.analysis.view_received import needs_in_words

    r = result.received
    assert r is not None
    print(
        f"\nreceived: {r.receipts} receipts, {r.messages} messages, {r.duplicates} duplicates "
        f"({r.extra_copies} extra copies; {r.by_message_id} known by Message-ID alone, "
        f"{r.unidentified} receipts with no id); longest gap {r.longest_gap_s} s"
    )
    for name, s in r.servers.items():
        span = (
            f"first {s.first_s} s, last {s.last_s} s" if s.first_s is not None else "none received"
        )
        print(
            f"  {name}: {s.receipts} receipts ({s.dropped} dropped), {span}, "
            f"longest gap {s.longest_gap_s} s"
        )
    print(needs_in_words(result))


def journal_problem_lines(problems: JournalProblems) -> list[str]:
    """One line per journal file with lines left out: a damaged journal must not pass for
    lost messages (its unreadable lines may be their receipts)."""
    lines = []
    for name, bad in problems.unreadable_lines.items():
        n = bad.lines
        first = ", ".join(str(line) for line in bad.first) + (", ..." if n > len(bad.first) else "")
        lines.append(
            f"journal {name}: {n} unreadable line{'s' * (n != 1)} ({first}) left out: "
            f"the counts from {bad.kind} journals are unverified"
        )
    for name, cut in problems.missing_lines.items():
        n = cut.lines
        lines.append(
            f"journal {name}: {n} line{'s' * (n != 1)} shorter than when the run ended "
            f"(harness.json): cut short, the counts from {cut.kind} journals are unverified"
        )
    trusted = problems.torn_last_line_trusted
    for name in problems.torn_last_line:
        lines.append(
            f"journal {name}: its last line is torn (cut mid-write), left out"
            + ("" if trusted else ": the run finished cleanly, so the file was cut short "
               "and the counts from it are unverified")
        )  # fmt: skip
    return lines


def cmd_sinks(args: argparse.Namespace) -> int:
    from loadtest.bundled import scenario_path
    from loadtest.orchestrate import SetupError, prepare
    from loadtest.sink_fleet import sinks_file
    from loadtest.sinks_run import SinksRun, parse_start_at
    from sinks.backup_mx import QueueUnavailable

    try:
        raw, scenario = prepare(scenario_path(args.scenario), args.set, args.seed)
        # A proxy or backup MX forwards to a server by name: that one gets its port now.
        config = sinks_file(scenario)
        start_at = None if args.start_at is None else parse_start_at(args.start_at, time.time())
    except (ScenarioError, OverrideError, SetupError) as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(f"sinks: {exc}")
    outside = _listeners_outside(scenario) + _relays_outside(scenario)
    if problem := _Consent(args.yes).sending(scenario.name, outside):
        return fail(problem)
    try:
        stamp = time.strftime("%Y%m%d-%H%M%S")  # not over the name: a % in it is no format
        out = args.out or inside(Path("reports"), f"{scenario.name}-sinks-{stamp}")
    except UnsafePath as exc:
        return fail(str(exc))
    problem = _unwritable(out)
    if problem:
        return fail(problem)
    try:
        record = SinksRun(scenario, raw, config, out, start_at, dns_port=args.dns_port).run()
    except QueueUnavailable as exc:
        return fail(f"sinks: {exc}")
    except (OSError, ValueError) as exc:  # a port taken; a fault a sink refused
        return fail(f"sinks: {exc}")
    return _sinks_exit_code(record, out)


def _sinks_exit_code(record: dict[str, Any], run_dir: Path) -> int:
    """As `maildrill run`'s: 2 when a fault did not start (it failed on its sink), 3 when
    the run is partial (stopped before a fault's time, or a sink died and stopped them)."""
    if record["aborted_by"]:
        return fail(f"sinks: {record['aborted_by']} (journals kept in {run_dir})")
    if record["partial"]:
        deaths = "; ".join(str(d["error"]) for d in record["sink_deaths"])
        why = deaths or f"stopped by {record['interrupted_by']} before a fault's time"
        print(f"maildrill: sinks: partial run: {why} (journals kept in {run_dir})",
              file=sys.stderr)  # fmt: skip
        return EXIT_PARTIAL
    return EXIT_OK


def cmd_scenarios(args: argparse.Namespace) -> int:
    from loadtest.bundled import bundled_scenarios

    rows = bundled_scenarios()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from loadtest.bundled import scenario_path
    from loadtest.orchestrate import prepare

    try:
        path = scenario_path(args.scenario)
        _, scenario = prepare(path, args.set, args.seed, args.workers)
    except (ScenarioError, OverrideError) as exc:
        return fail(str(exc))
    schedule = scenario.campaign.build_schedule()
    print(
        f"{path}: ok: {scenario.name}: {schedule.total} messages over {schedule.duration_s:g} s, "
        f"{len(scenario.servers)} servers, {len(scenario.faults)} faults, "
        f"{len(scenario.slo)} SLOs"
    )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from loadtest.analysis import summary as summary_mod

    if not args.run_dir.is_dir():
        return fail(f"{args.run_dir}: not a run directory")
    if args.junit is not None and (problem := junit.unwritable(args.junit)):
        return fail(problem)
    from loadtest.analysis.in_child import ChildKilled

    try:
        result = summary_mod.write(args.run_dir)
    except (ScenarioError, RunDirError) as exc:  # a damaged file, named in the message
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the reports in {args.run_dir}: {exc.strerror}")
    except ChildKilled as exc:
        return fail(f"no report of {args.run_dir}: {exc}")
    if args.json:
        print(summary_mod.as_json(result), end="")
    else:
        _print_summary(result, args.run_dir)
    return _write_junit(args.junit, result) or _exit_code(result, args.run_dir)


def cmd_compare(args: argparse.Namespace) -> int:
    from loadtest.analysis import compare, fail_on

    try:
        rules = [fail_on.parse(text) for text in args.fail_on]
    except ValueError as exc:
        return fail(f"compare: --fail-on {exc}")
    for run_dir in (args.run_a, args.run_b):
        if not run_dir.is_dir():
            return fail(f"{run_dir}: not a run directory")
        if not (run_dir / "summary.json").exists() and not _has_journals(run_dir):
            return fail(f"{run_dir}: no summary.json and no journals here")
    try:
        a, b = compare.load_summary(args.run_a), compare.load_summary(args.run_b)
    except (ScenarioError, RunDirError) as exc:  # a damaged file, named in the message
        return fail(str(exc))
    text = compare.render(str(args.run_a), str(args.run_b), compare.rows(a, b))
    verdicts = fail_on.check(rules, a, b)
    if verdicts:
        text += fail_on.render(verdicts)
    out = args.out or args.run_b / "compare.md"
    if args.out is None and out.is_symlink():  # inside a run directory someone handed over
        return fail(f"{out}: a symbolic link: compare.md is written only inside the run")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {out}: {exc.strerror}")
    print(text, end="")
    print(f"written to {out}", file=sys.stderr)
    if verdicts:
        print(f"maildrill: {fail_on.summary_line(verdicts)}", file=sys.stderr)
    return EXIT_SLO_FAILED if any(v.broken for v in verdicts) else EXIT_OK


def _has_journals(run_dir: Path) -> bool:
    """A sender's journal, or a sink's or proxy's (a `maildrill sinks` run: receipts alone,
    which `maildrill report` summarises too)."""
    from loadtest.analysis.loaded import SERVER_JOURNALS

    names = (f.name for f in run_dir.glob("*.csv"))
    return any(n.startswith("attempts") or SERVER_JOURNALS.match(n) for n in names)


def cmd_check(args: argparse.Namespace) -> int:
    from loadtest import preflight
    from loadtest.addresses import AddressError, AddressPolicy
    from loadtest.scenario import load_scenario, parse_server_override

    if args.dns is not None:
        return _check_dns(args)
    dns_only = [f for f in ("resolver", "source", "helo", "dkim", "dkim_key") if getattr(args, f)]
    if dns_only:
        return fail(f"check: --{dns_only[0].replace('_', '-')} goes with --dns DOMAIN")
    if bool(args.targets) == bool(args.scenario):
        return fail("check: give targets (HOST:PORT ...) or --scenario FILE, one of the two")
    if args.server and not args.scenario:
        return fail("check: --server NAME=HOST:PORT goes with --scenario")
    if args.timeout <= 0 or args.expiry_days < 0:
        return fail("check: --timeout must be > 0 and --expiry-days >= 0")
    try:
        AddressPolicy().check(args.rcpt, "recipient")
    except AddressError as exc:
        return fail(f"check: --rcpt: {exc}; use an address in a reserved domain (.invalid)")
    expect = preflight.Expectations()
    left_out: dict[str, str] = {}
    try:
        if args.scenario:
            overrides = dict(parse_server_override(item) for item in args.server)
            for name, (host, _) in overrides.items():
                preflight.parse_target(f"{name}={host}:1")  # loopback only, like other targets
            scenario = load_scenario(args.scenario, overrides)
            named = _named_addresses(scenario)
            left_out = named.missing
            targets = preflight.targets_of(scenario, named.found)
            expect = preflight.expectations_of(scenario)
            if not targets:
                return fail(f"check: nothing to check: {'; '.join(left_out.values())}")
        else:
            targets = [preflight.parse_target(text) for text in args.targets]
    except (ScenarioError, preflight.TargetError) as exc:
        return fail(str(exc))
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        return fail(f"check: names must be unique: {', '.join(names)}")
    options = preflight.Options(
        timeout_s=args.timeout, transaction=args.transaction, recipient=args.rcpt
    )
    facts, result = preflight.check(targets, options, expect, args.expiry_days, left_out)
    if args.json:
        print(json.dumps(preflight.as_json(facts, result), indent=2))
    else:
        print(preflight.render_table(facts, result, time.time()), end="")
    return EXIT_OK if result.ok else EXIT_SLO_FAILED


def _named_addresses(scenario: Scenario) -> Located:
    """`maildrill check --scenario`: its servers named by DNS looked up as the senders will
    look them up, through its `resolver:` (without one, the run's DNS server is not running
    here: they are left out of the check, never asked of the system's resolver); each one
    left out with the reason, which the check shows as a flag."""
    from loadtest.dns_route import Located, locate

    named = {s.name: (s.host, s.port) for s in scenario.servers if scenario.dns_named(s)}
    resolver = scenario.senders_resolver(None)
    if resolver is None:
        return Located(
            {},
            {
                name: f"{name}: {host} is served by the run's dns: zones, which run only in "
                "`maildrill run`"
                for name, (host, _) in named.items()
            },
        )
    return locate(named, resolver, scenario.allow_remote)


def _check_dns(args: argparse.Namespace) -> int:
    """`maildrill check [SCENARIO] --dns DOMAIN`: 0 clean, 1 a finding, 2 bad input."""
    from loadtest.bundled import scenario_path
    from loadtest.dnscheck import command, render, senders
    from loadtest.dnscheck.run_keys import RunKeys, run_keys
    from loadtest.scenario import load_scenario

    if args.server or args.transaction:
        return fail("check: --server and --transaction are for the SMTP check, not --dns")
    if len(args.targets) > 1 or (args.targets and args.scenario):
        return fail("check --dns: one scenario (a file or bundled name), or --scenario FILE")
    if args.timeout <= 0:
        return fail("check: --timeout must be > 0")
    named = args.scenario or (args.targets[0] if args.targets else None)
    if named is None and not (args.resolver and args.source):
        return fail(
            "check --dns: give the scenario (a file or bundled name), or --resolver "
            "HOST:PORT and the servers with --source NAME=ADDRESS"
        )
    try:
        scenario = load_scenario(scenario_path(named)) if named else None
        allow_remote = scenario.allow_remote if scenario is not None else False
        domain = command.parse_domain(args.dns)
        resolver = (
            command.parse_resolver(args.resolver, allow_remote=allow_remote)
            if args.resolver
            else _named_resolver_address(scenario)
        )
        keys = run_keys(scenario.servers) if scenario and not resolver else RunKeys()
        authority = None if resolver else command.served_zones(scenario, domain, keys.txt)
        explicit = senders.explicit_of(args.source, args.helo, args.dkim, args.dkim_key)
        sending = senders.senders_of(scenario, domain, explicit, keys.signing)
    except (ScenarioError, command.CheckInputError, senders.SenderError) as exc:
        return fail(str(exc))
    facts, result = command.check(
        domain, sending, resolver=resolver, authority=authority, timeout_s=args.timeout
    )
    if args.json:
        print(json.dumps(render.as_json(facts, result), indent=2))
    else:
        print(render.render_text(facts, result), end="")
    return EXIT_OK if result.ok else EXIT_SLO_FAILED


def _named_resolver_address(scenario: Scenario | None) -> tuple[str, int] | None:
    """`check --dns` without --resolver: a scenario with no `dns:` zones but a `resolver:`
    is checked as that resolver answers (its zones, when it has them, are what the run's
    verifying sinks ask, so they are checked instead)."""
    if scenario is None or scenario.dns is not None or scenario.resolver is None:
        return None
    return scenario.resolver.address


def cmd_plan(args: argparse.Namespace) -> int:
    """`maildrill plan`: 0 the campaign meets its deadline and headroom, 1 it does not."""
    from loadtest.plan import command, render
    from loadtest.plan.spec import PlanError, load_plan

    sets = list(args.set)
    for item in args.capacity:
        name, sep, rate = item.partition("=")
        if not sep or not name.strip() or "." in name:
            return fail(f"plan: --capacity {item!r}: expected SERVER=RATE, e.g. primary=400")
        sets.append(f"capacity.servers.{name.strip()}={rate}")
    try:
        spec = load_plan(args.plan_file, sets)
        outcome = command.compute(spec)
    except PlanError as exc:
        return fail(f"plan: {exc}")
    try:
        out = args.out or inside(Path("reports"), f"plan-{time.strftime('%Y%m%d-%H%M%S')}")
    except UnsafePath as exc:
        return fail(str(exc))
    try:
        command.write(outcome, out)
    except OSError as exc:
        return fail(f"plan: cannot write to {out}: {exc.strerror}")
    for line in render.lines(outcome.plan):
        print(line)
    print(f"written to {out}", file=sys.stderr)
    return EXIT_OK if outcome.plan.met else EXIT_SLO_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="maildrill", description="Failover drills and capacity runs for SMTP setups."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a drill: sinks, Locust, faults, report")
    _scenario_args(run)
    run.add_argument("--out", type=Path, help="run directory (default reports/RUN-ID)")
    run.add_argument("--web", action="store_true", help="with Locust's web UI")
    metrics_args(run)
    _junit_arg(run)
    run.add_argument(
        "--yes",
        action="store_true",
        help="confirm servers, and a --master-bind address, outside loopback, or a resolver: "
        "the scenario names (allow_remote)",
    )
    remote = run.add_argument_group(
        "workers on other hosts",
        "the Locust master listens for workers started elsewhere with `maildrill worker "
        "--master HOST:PORT`; their journal rows come back here",
    )
    remote.add_argument("--master-bind", metavar="ADDR[:PORT]",
                        help=f"listen there for workers (IPv4; port {DEFAULT_PORT} by default; "
                        "outside loopback only with allow_remote and --yes)")  # fmt: skip
    remote.add_argument("--expect-workers", type=int, metavar="N",
                        help="start the campaign once N workers have connected")  # fmt: skip
    remote.add_argument("--workers-wait", type=finite_float, metavar="S",
                        help=f"give up (exit 2) unless they all connect within S seconds "
                        f"(default {DEFAULT_WAIT_S:g})")  # fmt: skip
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser(
        "worker",
        help="a Locust worker for a `maildrill run --master-bind` elsewhere",
        description="Run one Locust worker for a drill whose master runs elsewhere: the "
        "scenario, run id and schedule come from the master, the journal rows go back to "
        "it. Targets outside loopback only if the master's scenario says allow_remote and "
        "this worker was started with --yes; passwords read here only with --allow-secrets. "
        "Exit 0 the run ended, 1 the master vanished, 2 bad input or no master.",
    )
    worker.add_argument("--master", required=True, metavar="HOST[:PORT]",
                        help=f"the master's address (port {DEFAULT_PORT} by default)")  # fmt: skip
    worker.add_argument("--wait", default=f"{DEFAULT_WAIT_S:g}", metavar="S",
                        help=f"give up (exit 2) unless the master answers within S seconds "
                        f"(default {DEFAULT_WAIT_S:g})")  # fmt: skip
    worker.add_argument("--yes", action="store_true",
                        help="send to targets outside loopback if the master's scenario names "
                        "them, or a resolver: (allow_remote); without it such a plan is "
                        "refused")  # fmt: skip
    worker.add_argument("--allow-secrets", action="store_true",
                        help="let the master's scenario read AUTH passwords on this host "
                        "(password_env, password_file); else such a plan is refused")  # fmt: skip
    worker.set_defaults(func=cmd_worker)

    capacity = sub.add_parser(
        "capacity",
        help="capacity curves: each local server alone, then all, by adaptive step load",
        description="Measure each server alone (routing pinned to it), then all as the "
        "scenario routes them: steps of constant load climb until one is unstable, then "
        "bisect to the knee. Writes capacity.json, capacity.md and plots/capacity.png. "
        "Exit 0 every knee found, 1 not found within the precision, 2 bad input, 3 "
        "interrupted.",
    )
    _scenario_args(capacity)
    capacity.add_argument("--out", type=Path, help="run directory (default reports/RUN-ID)")
    capacity.add_argument("--server", action="append", default=[], metavar="NAME",
                          help="measure this server alone (repeatable; default: every local "
                          "one)")  # fmt: skip
    capacity.add_argument("--step-s", type=finite_float, default=3.0,
                          help="seconds per step (3)")  # fmt: skip
    capacity.add_argument(
        "--start-rate",
        type=finite_float,
        help="first step, msgs/s (default: the schedule's first rate)",
    )
    capacity.add_argument(
        "--max-rate",
        type=finite_float,
        help="never offer more, msgs/s (default: the schedule's highest)",
    )
    capacity.add_argument("--max-steps", type=int, default=12, help="per curve (12)")
    capacity.add_argument(
        "--yes",
        action="store_true",
        help="confirm servers outside loopback, or a resolver:, the scenario names "
        "(allow_remote): the `all` curve's steps route as the scenario does",
    )
    capacity.add_argument("--factor", type=finite_float, default=2.0,
                          help="climb by this factor per stable step (2)")  # fmt: skip
    capacity.add_argument(
        "--precision",
        type=finite_float,
        default=0.05,
        help="refine until the knee is bracketed this closely (0.05)",
    )
    capacity.set_defaults(func=cmd_capacity)

    sinks_cmd = sub.add_parser("sinks", help="start a scenario's local sinks only")
    _scenario_args(sinks_cmd)
    sinks_cmd.add_argument("--out", type=Path, help="journal directory")
    sinks_cmd.add_argument("--yes", action="store_true",
                           help="confirm a sink listening, or a backup MX or proxy relaying, "
                           "outside loopback (allow_remote)")  # fmt: skip
    sinks_cmd.add_argument(
        "--start-at",
        metavar="TIME",
        help="start the fault timeline then: epoch seconds or ISO-8601 (default: once the "
        "sinks listen); not in the past, at most a day ahead",
    )
    sinks_cmd.add_argument(
        "--dns-port",
        type=port_number,
        default=0,
        metavar="PORT",
        help="the port of the scenario's DNS server, on 127.0.0.1 (default: a free one; 53 "
        "for a real MTA's resolver in a network namespace of its own: README)",
    )
    sinks_cmd.set_defaults(func=cmd_sinks)

    sub.add_parser("scenarios", help="list the bundled scenarios").set_defaults(func=cmd_scenarios)

    validate = sub.add_parser("validate", help="check a scenario and say what it will do")
    _scenario_args(validate)
    validate.set_defaults(func=cmd_validate)

    report = sub.add_parser("report", help="analyse a run directory again")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print summary.json")
    _junit_arg(report)
    report.set_defaults(func=cmd_report)

    compare_cmd = sub.add_parser("compare", help="what changed from run A to run B")
    compare_cmd.add_argument("run_a", type=Path)
    compare_cmd.add_argument("run_b", type=Path)
    compare_cmd.add_argument("--out", type=Path, help="compare.md path (default RUN_B/compare.md)")
    compare_cmd.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="RULE",
        help="exit 1 when B breaks it, e.g. 'lost>0', 'p95_latency_ms>+10%%' (repeatable)",
    )
    compare_cmd.set_defaults(func=cmd_compare)

    check = sub.add_parser(
        "check",
        help="compare primary and secondary: what would break mail after a failover",
        description="Connect to each server (the first is the reference, the primary): banner, "
        "EHLO capabilities, STARTTLS and certificate, and flag every difference that would "
        "break mail after a failover; with --dns DOMAIN, the domain's DNS as providers check "
        "it. Exit 0 clean, 1 something flagged, 2 bad input.",
    )
    check.add_argument("targets", nargs="*", metavar="[NAME=]HOST:PORT", help="loopback only")
    server_args(
        check,
        "check the servers of this scenario",
        "with --scenario: where a server (e.g. a local sink) listens (repeatable)",
    )
    check.add_argument("--transaction", action="store_true", help="send one test message")
    check.add_argument(
        "--rcpt", default="preflight@maildrill.invalid", help="its recipient (a reserved domain)"
    )
    check.add_argument("--timeout", type=finite_float, default=5.0, help="seconds per step (5)")
    check.add_argument(
        "--expiry-days",
        type=finite_float,
        default=14.0,
        help="flag certificates expiring sooner (14)",
    )
    check.add_argument("--json", action="store_true", help="print the facts and flags as JSON")
    _check_dns_args(check)
    check.set_defaults(func=cmd_check)

    plan = sub.add_parser(
        "plan",
        help="plan a campaign on measured capacity: backlog, lateness, what would meet it",
        description="A fluid-queue model of the campaign on measured (or given) capacity, "
        "with an outage and failover timings: plan.json, plan.md, plan.png, plan-series.csv. "
        "Exit 0 the deadline and headroom are met, 1 not, 2 bad input. Keys: "
        "docs/planning.md.",
    )
    plan.add_argument("plan_file", nargs="?", type=Path, metavar="PLAN.yaml")
    plan.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key, e.g. --set campaign.messages=1000000 (repeatable)",
    )
    plan.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="SERVER=RATE",
        help="a server's capacity in msgs/s, by hand (repeatable)",
    )
    plan.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default reports/plan-STAMP)"
    )
    plan.set_defaults(func=cmd_plan)

    sink = sub.add_parser("sink", help="start the sinks of a sink config file")
    sinks.cli.add_arguments(sink)
    sink.set_defaults(func=sinks.cli.run)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("maildrill: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `maildrill scenarios | head`: the reader has all it wanted. Point stdout at
        # /dev/null so the interpreter's flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the last resort: never a traceback for a user
        return fail(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}")


# Commands whose process ends holding a run's analysis (frames of millions of rows): it
# exits without freeing them object by object, which took a quarter of a second at a
# million attempts (issue 18). Everything they write is closed by then.
EXIT_AT_ONCE = frozenset({"report"})


def script() -> None:
    """The `maildrill` command (and `python -m loadtest.cli`): `main`, then exit."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in EXIT_AT_ONCE:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BrokenPipeError, ValueError):  # a reader gone; closed
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    script()
