"""`maildrill run`: sinks up, Locust running the campaign, faults on time, summary written.

Faults on time: once Locust fixes t0, every fault of a sink goes to it ahead, with its epoch
start (t0 + at), and the sink starts and ends it on its own clock (`sinks.host`), so a
drill whose orchestrator is starved of CPU still faults its sinks on time. The drill then
asks each sink, once a fault's time has passed, whether it started (and when), for the
harness record and the progress line; a fault that will not start fails the run. Postfix
faults (`postfix stop|abort|start`) are still carried out here, when due.

`Drill.run` is the list of steps; each part has a module of its own: the children and
their stopping (`loadtest.supervise`), the sinks started in waves (`loadtest.sink_fleet`),
the Postfix instances (`loadtest.mta_fleet`), the faults as a timeline of typed events
(`loadtest.timeline`, pure), the progress line (`loadtest.progress`) and the sinks'
control API (`sinks.control_client`).

Every child (sinks, Locust master and workers) runs in its own session, so a Ctrl-C on the
terminal reaches maildrill alone, which then stops them in order: load first, then sinks,
so the last attempts still find their servers. Children also die with maildrill (Linux
PR_SET_PDEATHSIG), so nothing is left behind when maildrill itself is killed. The steps,
the processes and how they talk: docs/architecture.md.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from loadtest import limits, preflight
from loadtest.analysis.rundir import journal_manifest
from loadtest.distributed import (
    RemoteWorkers,
    WorkersFile,
    master_args,
    not_connected,
    worker_command,
)
from loadtest.dns_route import Located, locate
from loadtest.dns_run import start_dns
from loadtest.fault_event import DNS_TARGET
from loadtest.mta_fleet import MtaFleet
from loadtest.overrides import apply_set
from loadtest.postfix import PostfixError
from loadtest.progress import ProgressLine
from loadtest.resolver_mx import Consent
from loadtest.runlog import RunLog, SetupError
from loadtest.scenario import Scenario, ScenarioError, parse_scenario, read_yaml, with_mx_sets
from loadtest.sink_fleet import READY_TIMEOUT_S, Address, SinkFleet, preset_addresses
from loadtest.supervise import Child, Supervisor, free_port
from loadtest.timeline import (
    DnsServerFault,
    MtaRestart,
    MtaStop,
    Planned,
    SinkFault,
    Timeline,
    plan,
)
from loadtest.worker_consent import SECRETS_ENV, YES_ENV
from loadtest.worker_roll import WORKERS_FILE
from maildrill.control_auth import TOKEN_ENV
from maildrill.netaddr import is_loopback
from sinks.control_client import ActiveFault, ControlClient, ControlError, ControlRefused

__all__ = [
    "Drill",
    "SetupError",
    "prepare",
    "redact",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_GRACE_S = 15.0
# How long after its planned start a sink's fault may still be pending before the drill
# calls it failed: far beyond a late timer on a loaded sink (LATE_S in the tests is 0.25 s).
START_GRACE_S = 5.0
# How often the drill asks a sink about a fault it has not yet seen started.
ASK_EVERY_S = 0.2


def prepare(
    path: Path,
    sets: list[str],
    seed: int | None = None,
    workers: int | None = None,
    *,
    remote_workers: bool = False,
    consent: Consent | None = None,
) -> tuple[dict[str, Any], Scenario]:
    """Read, override and validate a scenario; raises ScenarioError or OverrideError.
    `remote_workers`: the senders run on other hosts (`--master-bind`), so this machine is
    checked for the sinks alone; each worker checks its own share (loadtest.locust_glue).
    `consent`: asked before a named resolver is first asked for the MX sets (after the rest
    of the scenario validates; loadtest.resolver_mx)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top")
    for assignment in sets:
        apply_set(raw, assignment)
    if seed is not None:
        apply_set(raw, f"campaign.seed={seed}")
    if workers is not None:
        apply_set(raw, f"workers={workers}")
    raw = with_mx_sets(raw, str(path), consent)  # asked once: scenario.yaml keeps the sets as read
    scenario = parse_scenario(raw, str(path))
    here = limits.master_of_remote_workers() if remote_workers else None
    problem = limits.machine_problem(scenario, here)
    if problem:
        raise ScenarioError(f"{path}: {problem}")
    return raw, scenario


SECRET_KEYS = frozenset({"password", "credentials"})


def redact(data: Any) -> Any:
    """A copy with every password and credentials value replaced: for files that travel."""
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if key in SECRET_KEYS and isinstance(value, dict):
                out[key] = {k: "<redacted>" for k in value}
            elif key in SECRET_KEYS and value is not None:
                out[key] = "<redacted>"
            else:
                out[key] = redact(value)
        return out
    if isinstance(data, list):
        return [redact(item) for item in data]
    return data


class Drill:
    def __init__(
        self,
        scenario: Scenario,
        raw: dict[str, Any],
        run_dir: Path,
        run_id: str,
        web: bool = False,
        out: TextIO = sys.stderr,
        metrics: tuple[int | None, float] = (None, 0.0),
        remote: RemoteWorkers | None = None,
        yes: bool = False,
    ) -> None:
        """`yes`: what the run sends off this machine was confirmed (`maildrill run --yes`
        or at its terminal): only then do its own Locust workers take it (YES_ENV)."""
        self.scenario = scenario
        self.yes = yes
        self.raw = raw
        self.run_dir = run_dir
        self.run_id = run_id
        self.web = web
        self.out = out
        self.log = RunLog(out)
        self.children = Supervisor(run_dir)
        token = secrets.token_urlsafe(18)  # this run's control token: sinks, DNS server
        self.token = token
        self.sinks = SinkFleet(scenario, run_dir, self.children, token, redact)
        self.mtas = MtaFleet(scenario, run_dir, self.log, self.children)
        self.addresses: dict[str, Address] = {}  # where each server listens, once known
        self.dns: Address | None = None  # the run's DNS server, with a `dns:` section
        self.dns_control: ControlClient | None = None  # its control API (DNS faults)
        self.interrupted: str | None = None
        # Why the run was stopped early: a scheduled fault that did not start.
        self.aborted: str | None = None
        self.timeline = Timeline([])  # planned at t0
        self.t0: float | None = None
        self.planned = 0
        self.locust_exit: int | None = None
        # --metrics-port (None: off; 0: a free one) and --metrics-linger of `maildrill run`.
        self.metrics = metrics
        # --master-bind and --expect-workers: Locust workers on other hosts, which no
        # Supervisor sees die; the master's workers.json names those lost.
        self.remote = remote
        self.workers_file = WorkersFile(run_dir / WORKERS_FILE)
        self.workers_seen_at = 0.0

    # -- the whole drill ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to the end (or to an interruption); returns the harness record."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        limits.raise_open_files_limit()  # for the sinks and Locust, which inherit it
        steps = (
            self._write_scenario,  # first: even a run interrupted at once has its scenario
            self._start_dns,
            self._start_sinks,
            self._start_mtas,
            self._write_scenario,  # again, with the sinks' and MTAs' real ports
            self._preflight,
            self._start_prober,
            self._start_locust,
            self._wait_for_t0,
            self._send_sink_faults,
            self._follow,
            self._wait_for_relays,
            self._wait_for_mta_queues,
        )
        try:
            for step in steps:
                if self._stopping():
                    break
                step()
        except SetupError:
            if not self.interrupted:
                raise  # an interruption during set-up is a partial run, not a failure
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._write_harness()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupted = signal.Signals(signum).name
        self.log.event("interrupted", signal=self.interrupted)

    def _stopping(self) -> bool:
        return bool(self.interrupted or self.aborted)

    def say(self, text: str) -> None:
        self.log.say(text)

    # -- set-up ---------------------------------------------------------------------------

    def _write_scenario(self) -> None:
        """The scenario as run: overrides applied, local sinks' real ports filled in."""
        resolved = json.loads(json.dumps(self.raw))
        for server in resolved.get("servers", []):
            if server.get("name") in self.addresses:
                server["host"], server["port"] = self.addresses[server["name"]]
        self.scenario_file = self.run_dir / "scenario.yaml"
        self.scenario_file.write_text(yaml.safe_dump(redact(resolved), sort_keys=False))

    def _start_dns(self) -> None:
        """The scenario's zones served (loadtest.dns_run), before anything that looks up."""
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        published = self.mtas.make_keys()  # the MTAs' DKIM keys, in the zone they sign for
        run_dns = start_dns(self.scenario, self.run_dir, self.children,
                            stopping=lambda: bool(self.interrupted), txt=published,
                            token=self.token)  # fmt: skip
        if run_dns is not None:
            self.dns, self.dns_control = run_dns.address, run_dns.control
            assert self.scenario.dns is not None
            host, port = self.dns
            self.log.event("dns_ready", host=host, port=port, zones=list(self.scenario.dns.zones),
                           control=run_dns.control.base_url)  # fmt: skip
            self.say(f"DNS: {', '.join(self.scenario.dns.zones)} served on {host}:{port} "
                     "(UDP and TCP)")  # fmt: skip

    def _start_sinks(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.addresses = preset_addresses(self.scenario)
        self.sinks.start(self.addresses, stopping=lambda: bool(self.interrupted), dns=self.dns)
        self.log.event("sinks_ready", sinks={n: list(a) for n, a in self.addresses.items()})

    def _start_mtas(self) -> None:
        self.mtas.start(self.addresses)

    def _preflight(self) -> None:
        """`maildrill check` over the servers, now that the sinks listen: preflight.json,
        flags printed as warnings, or fatal with `strict_preflight: true`."""
        try:
            now = self._addresses_now()
            targets = preflight.targets_of(self.scenario, now.found)
        except preflight.TargetError as exc:
            raise SetupError(f"pre-flight: {exc}") from None
        facts, result = preflight.check(targets, expect=preflight.expectations_of(self.scenario),
                                        left_out=now.missing)  # fmt: skip
        report = json.dumps(preflight.as_json(facts, result), indent=2)
        (self.run_dir / "preflight.json").write_text(report + "\n")
        self.log.event("preflight", flags=[f.code for f in result.flags])
        for flag in result.flags:
            self.say(f"pre-flight WARNING: {flag.message}")
        if result.flags and self.scenario.strict_preflight:
            more = f" (and {len(result.flags) - 1} more)" if len(result.flags) > 1 else ""
            raise SetupError(
                f"pre-flight check failed (strict_preflight): {result.flags[0].message}{more}; "
                f"see {self.run_dir / 'preflight.json'}"
            )
        if not result.flags:
            self.say(f"pre-flight: {len(facts)} servers agree; nothing breaks after a failover")
        # An MTA can answer SMTP with a daemon already dead (a bad main.cf value that
        # `postfix check` lets through): its log says so before any load.
        for name, instance in self.mtas.instances.items():
            for line in instance.troubles()[:3]:
                self.say(f"pre-flight WARNING: postfix {name} logged {line}")
                if self.scenario.strict_preflight:
                    raise SetupError(f"pre-flight check failed (strict_preflight): postfix "
                                     f"{name} logged {line}")  # fmt: skip

    def _addresses_now(self) -> Located:
        """Where every server is now: the sinks' (and each server maildrill does not
        start), and the servers named by DNS looked up once through what the senders ask
        (the run's DNS server or the scenario's `resolver:`; the senders look them up as
        they send). A server named by DNS never takes its preset address (its name): one the
        lookup gave no address for is in `missing`, never asked of the system's resolver."""
        named = {s.name: (s.host, s.port) for s in self.scenario.servers
                 if self.scenario.dns_named(s)}  # fmt: skip
        preset = {n: a for n, a in self.addresses.items() if n not in named}
        resolver = self.scenario.senders_resolver(self.dns)
        if resolver is None:
            missing = {n: f"{n}: no resolver to ask for {h}" for n, (h, _) in named.items()}
            return Located(preset, missing)
        located = locate(named, resolver, self.scenario.allow_remote)
        return Located({**preset, **located.found}, located.missing)

    def _start_prober(self) -> None:
        """Health probes (loadtest.prober) in a process of their own; probes.csv. A server
        named by DNS is probed at the address its name had when the probes started."""
        if self.scenario.probe_interval_ms <= 0 or self.interrupted:
            return
        cmd = [sys.executable, "-m", "loadtest.prober", "--scenario", str(self.scenario_file),
               "--out", str(self.run_dir)]  # fmt: skip
        named = {s.name for s in self.scenario.servers if self.scenario.dns_named(s)}
        probed = len(self.scenario.servers) - len(named)
        for name, (host, port) in self._addresses_now().found.items():
            if name in named and is_loopback(host):
                cmd += ["--server", f"{name}={host}:{port}"]
                probed += 1
        if not probed:  # every server named by DNS, none at a loopback address now
            self.say("health probes: no server at a loopback address to probe")
            return
        self.children.spawn("prober", "prober", cmd)

    def _start_locust(self) -> None:
        base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
        args = [
            *base,
            "--scenario", str(self.scenario_file),
            "--journal-dir", str(self.run_dir),
            "--run-id", self.run_id,
            "--csv", str(self.run_dir / "locust"),
        ]  # fmt: skip
        if self.dns is not None:
            args += ["--dns-server", f"{self.dns[0]}:{self.dns[1]}"]  # for run.json
        env: dict[str, str] | None = None
        if self.web:
            port = free_port()
            args += ["--web-host", "127.0.0.1", "--web-port", str(port), "--autostart",
                     "--autoquit", "10"]  # fmt: skip
            # The Failover tab's fault buttons: Locust calls the sinks, the token by
            # environment (never on a command line, nor to the browser).
            controls = ",".join(f"{n}={c.base_url.rsplit(':', 1)[1]}"
                                for n, c in self.sinks.controls.items())  # fmt: skip
            if controls:
                args += ["--sink-controls", controls]
                env = {TOKEN_ENV: self.sinks.token}
            if self.dns_control is not None:  # its DNS faults: the same token
                args += ["--dns-control", self.dns_control.base_url.rsplit(":", 1)[1]]
                env = {TOKEN_ENV: self.token}
            self.say(f"Locust web UI: http://127.0.0.1:{port}/ (Failover tab: /failover)")
        else:
            args += ["--headless", "--only-summary"]
        args += self._metrics_args()
        workers = self.scenario.workers
        if self.remote is not None:
            args += master_args(self.remote)
            bind = self.remote.bind
            self.log.event("remote_workers", bind=str(bind), expect=self.remote.expect)
            self.say(f"waiting up to {self.remote.wait_s:g} s for {self.remote.expect} Locust "
                     f"workers on {bind}: start each with `{worker_command(bind)}`")  # fmt: skip
        elif workers:
            port = free_port()
            args += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                     str(port), "--expect-workers", str(workers)]  # fmt: skip
            for i in range(workers):
                worker = [
                    *base,
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                ]
                # This run's own workers: what it sends to, if confirmed by `maildrill run`
                # (--yes), they need not ask again as a `maildrill worker` must; unconfirmed,
                # a plan that needs a yes is refused (one that reached their port first too).
                # Its secrets (password_env, password_file) are this host's, read for this
                # run's own scenario: its workers read them as its master would.
                consent = {YES_ENV: "1" if self.yes else "0", SECRETS_ENV: "1"}
                self.children.spawn("worker", f"locust-worker-{i + 1}", worker, env=consent)
        self.locust: Child = self.children.spawn("locust", "locust", args, env=env)

    def _metrics_args(self) -> list[str]:
        """The senders' /metrics (loadtest.sender_metrics) on the port asked for, and
        where each local sink's is (its control port): printed and in harness.json."""
        port, linger = self.metrics
        if port is None:
            return []
        port = port or free_port()
        sinks = {name: c.base_url + "/metrics" for name, c in self.sinks.controls.items()}
        senders = f"http://127.0.0.1:{port}/metrics"
        self.log.event("metrics", senders=senders, sinks=sinks)
        self.say(f"Metrics: {senders} (senders)")
        for name, url in sinks.items():
            self.say(f"Metrics: {url} (sink {name})")
        return ["--metrics-port", str(port), "--metrics-linger", str(linger)]

    def _wait_for_t0(self) -> None:
        """Until Locust writes run.json (the campaign's t0); then the faults are planned."""
        run_file = self.run_dir / "run.json"
        wait = self.remote.wait_s if self.remote else 10 * self.scenario.workers
        deadline = time.time() + READY_TIMEOUT_S + wait
        while not run_file.exists():
            if self.interrupted:
                return
            if self.locust.proc.poll() is not None or time.time() > deadline:
                if self.remote is not None:
                    raise SetupError(not_connected(self.remote, self.locust.log_path.read_text()))
                why = self.locust.last_log_line() or "no output"
                raise SetupError(f"Locust did not start the campaign: {why}")
            time.sleep(0.05)
        run = json.loads(run_file.read_text())
        self.t0 = float(run["t0"])
        self.planned = int(run["planned"])
        self.timeline = plan(self.scenario)

    def _send_sink_faults(self) -> None:
        """Every fault of a sink or the DNS server, ahead, with its epoch start: the server
        keeps the time."""
        if self.t0 is None:
            return
        for planned in self.timeline.sent_ahead():
            event = planned.event
            start_at = self.t0 + event.at
            what = "the DNS server" if isinstance(event, DnsServerFault) else "the sink"
            control = self._control(event.target)
            try:
                if isinstance(event, DnsServerFault):  # the sinks' API, the DNS server's kinds
                    body = event.request(start_at)
                    active = ActiveFault.from_json(control.call("POST", "/faults", body))
                else:
                    assert isinstance(event, SinkFault)
                    active = control.start_fault(event.spec, start_at=start_at)
            except ControlRefused as exc:
                self._fault_failed(planned, f"{what} refused it: {exc}")
                return
            except ControlError as exc:
                self._fault_failed(planned, f"{what}'s control API did not answer: {exc}")
                return
            planned.scheduled(active.id, time.time())
            self.log.event("fault_scheduled", target=event.target, kind=event.kind,
                           at_s=event.at, id=active.id)  # fmt: skip

    # -- during the run -----------------------------------------------------------------

    def _follow(self) -> None:
        """Faults on time, deaths of children noted, the progress line, until Locust ends."""
        if self.t0 is None:
            return
        campaign = self.scenario.campaign
        planned_s = campaign.build_schedule().duration_s + campaign.drain_s
        line = ProgressLine(self.out, self.run_dir / "attempts.csv", self.planned, planned_s)
        while not self._stopping():
            now = time.time()
            for planned in self.timeline.due(now - self.t0):
                if self.aborted:
                    break
                self._carry_out(planned)
            self._settle_sink_faults(now)
            self._note_deaths(now)
            self._note_workers(now)
            if self.locust.proc.poll() is not None:
                break
            line.tick(now, now - self.t0, self._active_faults(now - self.t0))
            time.sleep(0.05)
        elapsed = time.time() - self.t0
        self._note_workers(time.time(), refused_only=True)  # a refusal the load outran
        self._settle_sink_faults(time.time(), last=True)
        line.show(elapsed, self._active_faults(elapsed), final=True)
        self._cancel_pending()
        if not self._stopping():
            missed = self.timeline.not_started()
            if missed is not None:
                self._fault_failed(missed, f"never started: the load ended at {elapsed:.1f} s")

    def _settle_sink_faults(self, now: float, last: bool = False) -> None:
        """Ask each sink whether the faults whose time has come started, and when (every
        ASK_EVERY_S, or once more at the end); one the sink says will not start, or still
        pending START_GRACE_S after its time, fails the run."""
        assert self.t0 is not None
        for planned in self.timeline.unsettled(now - self.t0):
            event = planned.event
            assert planned.fault_id is not None
            if self.aborted or (not last and now - planned.asked_at < ASK_EVERY_S):
                continue
            planned.asked_at = now
            try:
                fault = self._control(event.target).fault(planned.fault_id)
            except ControlError as exc:
                self._fault_failed(planned, f"its control API did not answer: {exc}")
                continue
            why = planned.settle(fault.state, fault.started)
            if why is None and planned.done:
                self._log_started(planned)
            elif why is None and now - self.t0 > event.at + START_GRACE_S:
                self._fault_failed(planned, f"still pending {START_GRACE_S:g} s after its time")
            elif why is not None:
                self._fault_failed(planned, why)

    def _cancel_pending(self) -> None:
        """The load is over: faults still pending on the sinks must not fire during the
        drain (a down then would strand a backup MX's queue). Cancelled, and failed as
        never started (below) when the run was meant to reach them."""
        for planned in self.timeline.sent_ahead():
            if planned.fault_id is None or planned.done or planned.failed:
                continue
            event = planned.event
            try:
                fault = self._control(event.target).stop_fault(planned.fault_id)
            except ControlError:
                continue
            if fault.started is not None:  # it started just before the cancel: it did start
                planned.settle(fault.state, fault.started)
                self._log_started(planned)

    def _control(self, target: str) -> ControlClient:
        """The control API a fault sent ahead goes to: its sink's, or the DNS server's."""
        if target == DNS_TARGET and self.dns_control is not None:
            return self.dns_control
        return self.sinks.controls[target]

    def _log_started(self, planned: Planned) -> None:
        event = planned.event
        self.log.event("fault_started", target=event.target, kind=event.kind, at_s=event.at,
                       id=planned.fault_id, started_at=planned.started_at)  # fmt: skip

    def _note_deaths(self, now: float) -> None:
        assert self.t0 is not None
        for child, code in self.children.newly_dead(now):
            who = {"sink": {"sink": child.name}, "worker": {"worker": child.name}}
            self.log.event(f"{child.role}_died", **who.get(child.role, {"name": child.name}),
                           exit_code=code, at_s=round(now - self.t0, 3))  # fmt: skip
            what = {"sink": "sink", "worker": "Locust worker", "dkim": "OpenDKIM"}.get(
                child.role, child.role
            )
            self.say(f"\n{what} {child.name} died (exit {code}); going on")

    def _note_workers(self, now: float, last: bool = False, refused_only: bool = False) -> None:
        """What the Locust master's workers.json says, at most every half second (any
        time with `last` or `refused_only`):
        - a worker that refused the plan (its consent, its machine's limits) leaves its
          share unsent: the drill does not run as written, so it stops (exit 2), as for a
          fault that did not start;
        - workers on other hosts the master lost; at the last look, those that came back
          and rows a worker shipped that never arrived."""
        if not (last or refused_only) and now - self.workers_seen_at < 0.5:
            return
        self.workers_seen_at = now
        for worker, why in self.workers_file.refusals()[:1]:
            if not self.aborted:
                self.log.event("worker_refused", worker=worker, why=why)
                self.aborted = f"Locust worker {worker} {why}"
                self.say(f"\n{self.aborted}; stopping the run")
        if self.remote is None or refused_only:
            return
        for lost in self.workers_file.newly_lost():
            self.log.event("worker_lost", **lost)
            self.say(f"\nLocust worker {lost['worker']} lost at {lost['at_s']:.1f} s "
                     f"({lost['why']}); going on")  # fmt: skip
        if last:
            for back in self.workers_file.recovered():
                self.log.event("worker_recovered", **back)
                self.say(f"Locust worker {back['worker']} missed heartbeats from "
                         f"{back['missing_at_s']:.1f} s, came back and flushed every row: "
                         "not lost")  # fmt: skip
            for worker, rows in self.workers_file.rows_missing().items():
                self.log.event("worker_rows_missing", worker=worker, rows=rows)
                self.say(f"Locust worker {worker}: {rows} journal rows it shipped never "
                         "reached the master")  # fmt: skip

    def _remote_workers_lost(self) -> list[dict[str, Any]]:
        """Workers on other hosts lost for good, by the master's last roll (a `worker_lost`
        event may name one that came back)."""
        return self.workers_file.lost_at_end() if self.remote is not None else []

    def _active_faults(self, elapsed: float) -> list[str]:
        return [f"{p.event.kind}@{p.event.target}" for p in self.timeline.active(elapsed)]

    def _carry_out(self, planned: Planned) -> None:
        """Carry out one MTA event by postfix (a sink's faults went ahead); one that does
        not start fails the run."""
        planned.sent_at = time.time()
        event = planned.event
        try:
            if isinstance(event, MtaStop):
                self.mtas.halt(event)
                planned.status = f"{event.kind} done"
            elif isinstance(event, MtaRestart):
                self.mtas.restart(event)
                planned.status = "started"
        except PostfixError as exc:
            self._fault_failed(planned, str(exc))
            return
        planned.done = True
        self.log.event("fault_sent", target=event.target, kind=event.kind, at_s=event.at,
                       status=planned.status)  # fmt: skip

    def _fault_failed(self, planned: Planned, why: str) -> None:
        """A drill without its fault measures nothing it claims to: record it, and stop the
        run (load, then sinks, journals kept); `maildrill run` exits 2."""
        event = planned.event
        planned.status = f"failed: {why}"
        self.aborted = (
            f"fault {event.kind} on {event.target} at {event.at:g} s did not start: {why}"
        )
        self.log.event("fault_failed", target=event.target, kind=event.kind, at_s=event.at,
                       error=why)  # fmt: skip
        self.say(f"\n{self.aborted}; stopping the run")

    # -- after the load -------------------------------------------------------------------

    def _wait_for_relays(self) -> None:
        """Backup MXs may still be forwarding when the load ends: give them the drain time.

        What is still queued after that is reported as stranded, not lost.
        """
        backups = [
            s.name for s in self.scenario.servers if s.mode == "backup-mx" and s.upstream_name
        ]
        deadline = time.time() + self.scenario.campaign.drain_s
        for name in backups:
            depth = None
            while not self.interrupted:
                try:
                    depth = self.sinks.controls[name].status()["relay"]["depth"]
                except (ControlError, KeyError):
                    break  # a dead sink: nothing to wait for
                if depth == 0 or time.time() > deadline:
                    break
                time.sleep(0.2)
            self.log.event("relay_queue_at_end", sink=name, depth=depth)
            if depth:
                self.say(f"backup {name}: {depth} messages still queued at the end (stranded)")

    def _wait_for_mta_queues(self) -> None:
        self.mtas.wait_for_queues(
            self.scenario.campaign.drain_s, stopping=lambda: bool(self.interrupted)
        )

    # -- the end ------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Load first (it finishes its attempts and writes its stats), then the prober
        while the sinks still listen, the MTAs, and the sinks they relay to last. Faults
        still pending on the sinks are cancelled first: a run stopped before following its
        timeline (an abort, a Ctrl-C) must not have them fire while the load winds down."""
        self._cancel_pending()
        load = self.children.of("locust", "worker")
        for child in load:
            child.signal(signal.SIGINT if self.interrupted else signal.SIGTERM)
        for child in load:
            code = child.stop(None, STOP_GRACE_S)  # signalled just above
            if child.role == "locust":
                self.locust_exit = code
        self.children.stop("prober", signal.SIGTERM, 5.0)
        try:
            self.mtas.stop()
        finally:  # an MTA that would not stop leaves the sinks and the DNS to stop all the same
            self.sinks.stop()
            self.children.stop("dns", signal.SIGTERM, 5.0)  # last: the sinks look up to the end

    def _write_harness(self) -> dict[str, Any]:
        self._note_workers(time.time(), last=True)  # the master has written its last
        harness = {
            "partial": self._stopping() or self.t0 is None,
            "interrupted_by": self.interrupted,
            "aborted_by": self.aborted,
            # Every writer has stopped: the journals as they are now are the run's record.
            "journals": journal_manifest(self.run_dir),
            "locust_exit_code": self.locust_exit,
            "sink_deaths": self.log.of("sink_died"),
            "workers_lost": self.log.of("worker_died") + self._remote_workers_lost(),
            "faults": self.timeline.records(),
            "events": self.log.events,
            "finished_at": time.time(),
        }
        (self.run_dir / "harness.json").write_text(json.dumps(harness, indent=2) + "\n")
        return harness
