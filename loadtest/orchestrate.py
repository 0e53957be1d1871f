"""`maildrill run`: sinks up, Locust running the campaign, faults on time, summary written.

Every child (sinks, Locust master and workers) runs in its own session, so a Ctrl-C on the
terminal reaches maildrill alone, which then stops them in order: load first, then sinks,
so the last attempts still find their servers. Children also die with maildrill (Linux
PR_SET_PDEATHSIG), so nothing is left behind when maildrill itself is killed.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from loadtest import limits, preflight
from loadtest.analysis.rundir import journal_manifest
from loadtest.overrides import apply_set
from loadtest.postfix import PostfixError, PostfixInstance
from loadtest.scenario import Scenario, ScenarioError, ServerSpec, parse_scenario, read_yaml
from maildrill.journal import CsvJournal, stamp, uncell
from maildrill.paths import inside, make_private_dir, remove_private_dir, write_private
from sinks.control import TOKEN_ENV, auth_header
from sinks.journal import FAULT_FIELDS

MTA_QUEUE_FIELDS = ("time", "mta", "msg_id", "queue")

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 15.0


class SetupError(RuntimeError):
    """The drill could not start; the message says why in one line."""


def prepare(
    path: Path, sets: list[str], seed: int | None = None, workers: int | None = None
) -> tuple[dict[str, Any], Scenario]:
    """Read, override and validate a scenario; raises ScenarioError or OverrideError."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top")
    for assignment in sets:
        apply_set(raw, assignment)
    if seed is not None:
        apply_set(raw, f"campaign.seed={seed}")
    if workers is not None:
        apply_set(raw, f"workers={workers}")
    scenario = parse_scenario(raw, str(path))
    problem = limits.machine_problem(scenario)
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


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when maildrill dies, and a session of its own."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    role: str  # sink, locust, worker
    name: str
    proc: subprocess.Popen[str]
    log: TextIO
    died_at: float | None = None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, sig: int | None, grace: float) -> int | None:
        """Signal (unless already done), give it `grace` seconds, then insist: a second
        signal too soon would cut short what the first one asked it to finish."""
        if sig is not None:
            self.signal(sig)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(5)
        finally:
            self.log.close()


@dataclass
class TimedFault:
    at: float
    target: str
    body: dict[str, Any]
    sent_at: float | None = None
    status: str = "pending"


@dataclass
class Progress:
    """Reads the attempts journal as it grows; counts for the progress line."""

    path: Path
    offset: int = 0
    header: list[str] | None = None
    attempts: int = 0
    finished: int = 0
    recent: list[tuple[float, str]] = field(default_factory=list)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            return
        self.offset += cut
        text = chunk[:cut].decode("utf-8", "replace")
        rows = [[uncell(c) for c in row] for row in csv.reader(io.StringIO(text, newline=""))]
        if self.header is None and rows:
            self.header, rows = rows[0], rows[1:]
        assert self.header is not None
        col = {name: i for i, name in enumerate(self.header)}
        now = time.time()
        for row in rows:
            if len(row) != len(self.header):
                continue
            self.attempts += 1
            if row[col["final"]] == "1":
                self.finished += 1
            if row[col["outcome"]] == "accepted":
                self.recent.append((float(row[col["end"]]), row[col["server"]]))
        self.recent = [(t, s) for t, s in self.recent if now - t <= 1.0]

    def rates(self) -> dict[str, int]:
        """Accepted in the last second, per server."""
        since = time.time() - 1.0
        out: dict[str, int] = {}
        for end, server in self.recent:
            if end >= since:
                out[server] = out.get(server, 0) + 1
        return out


class Drill:
    def __init__(
        self,
        scenario: Scenario,
        raw: dict[str, Any],
        run_dir: Path,
        run_id: str,
        web: bool = False,
        out: TextIO = sys.stderr,
    ) -> None:
        self.scenario = scenario
        self.raw = raw
        self.run_dir = run_dir
        self.run_id = run_id
        self.web = web
        self.out = out
        self.children: list[Child] = []
        self.token = secrets.token_urlsafe(18)  # this run's control token for the sinks
        self.private_dir: Path | None = None
        self.mtas: dict[str, PostfixInstance] = {}
        self.mta_faults: dict[str, CsvJournal] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self.controls: dict[str, int] = {}
        self.interrupted: str | None = None
        # Why the run was stopped early: a scheduled fault that did not start.
        self.aborted: str | None = None
        self.events: list[dict[str, Any]] = []
        self.timeline: list[TimedFault] = []
        self.t0: float | None = None
        self.locust_exit: int | None = None

    # -- the whole drill ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to the end (or to an interruption); returns the harness record."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        limits.raise_open_files_limit()  # for the sinks and Locust, which inherit it
        steps = (
            self._write_scenario,  # first: even a run interrupted at once has its scenario
            self._start_sinks,
            self._start_mtas,
            self._write_scenario,  # again, with the sinks' and MTAs' real ports
            self._preflight,
            self._start_prober,
            self._start_locust,
            self._wait_for_t0,
            self._follow,
            self._wait_for_relays,
            self._wait_for_mta_queues,
        )
        try:
            for step in steps:
                if self.interrupted or self.aborted:
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
        self.event("interrupted", signal=self.interrupted)

    def event(self, event: str, /, **detail: Any) -> None:
        self.events.append({"time": round(time.time(), 6), "event": event, **detail})

    def _spawn(self, role: str, name: str, cmd: list[str], stdout: Any = None) -> Child:
        log = inside(self.run_dir, "logs", f"{name}.log").open("w")
        # Only the sinks get the control token, and by environment: never on a command line.
        env = {**os.environ, TOKEN_ENV: self.token} if role == "sink" else None
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            text=True,
            preexec_fn=_die_with_parent,  # no threads yet at spawn time
        )
        child = Child(role, name, proc, log)
        self.children.append(child)
        return child

    # -- sinks --------------------------------------------------------------------------

    def _start_sinks(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        record_dir = self.run_dir / "sinks"  # each sink's config, secrets redacted
        record_dir.mkdir(exist_ok=True)
        # What the sinks read may hold passwords: a private directory, gone after the run.
        self.private_dir = make_private_dir()
        # The MTAs start after the sinks (they relay to them), but a proxy in front of one
        # needs its address now: their ports are chosen first.
        for server in self.scenario.servers:
            if server.postfix is not None:
                self.addresses[server.name] = ("127.0.0.1", server.port or free_port())
        for server in self.scenario.servers:
            if not server.local:
                self.addresses.setdefault(server.name, (server.host, server.port))
        # In waves, each started at once: a backup MX or proxy needs the real address of
        # the upstream it forwards to, so it starts in the wave after that one.
        pending = [s for s in self.scenario.servers if s.local]
        while pending and not self.interrupted:
            wave = [s for s in pending if s.upstream_name in (None, *self.addresses)]
            if not wave:
                names = ", ".join(s.name for s in pending)
                raise SetupError(f"sinks {names}: their upstreams name each other in a circle")
            started = [(server, self._spawn_sink(server, record_dir)) for server in wave]
            for server, child in started:
                (entry,) = self._ready_line(child)["sinks"]
                self.addresses[server.name] = (entry["host"], int(entry["port"]))
                self.controls[server.name] = int(entry["control_port"])
            pending = [s for s in pending if s not in wave]
        self.event("sinks_ready", sinks={n: list(a) for n, a in self.addresses.items()})

    def _spawn_sink(self, server: ServerSpec, record_dir: Path) -> Child:
        sink = server.sink_config(self.addresses)
        config = {
            "seed": self.scenario.campaign.seed,
            # A proxy in front of a remote server needs it (the scenario said so).
            "allow_remote": self.scenario.allow_remote,
            "sinks": [sink.model_dump(mode="json", exclude_none=True)],
        }
        assert self.private_dir is not None
        path = inside(self.private_dir, f"{server.name}.yaml")
        write_private(path, yaml.safe_dump(config, sort_keys=False))
        record = inside(record_dir, f"{server.name}.yaml")
        record.write_text(yaml.safe_dump(redact(config), sort_keys=False))
        cmd = [sys.executable, "-m", "sinks", str(path), "--out", str(self.run_dir)]
        return self._spawn("sink", server.name, cmd, stdout=subprocess.PIPE)

    # -- Postfix instances under test --------------------------------------------------

    def _start_mtas(self) -> None:
        """Build, check and start a Postfix instance per `postfix:` server."""
        for server in self.scenario.servers:
            spec = server.postfix
            if spec is None:
                continue
            instance = PostfixInstance(
                name=server.name,
                base=inside(self.run_dir, f"postfix-{server.name}"),
                port=self.addresses[server.name][1],
                relay=self.addresses[spec.relay],
                hostname=spec.hostname or f"{server.name}.maildrill.test",
                settings={k: str(v) for k, v in spec.settings.items()},
                routes={d: self.addresses[sink] for d, sink in spec.routes.items()},
                allow_remote=self.scenario.allow_remote,
            )
            self.mtas[server.name] = instance  # stopped at the end whatever happens next
            try:
                instance.write()
                instance.check()
                instance.start()
            except PostfixError as exc:
                raise SetupError(str(exc)) from None
            self.addresses[server.name] = ("127.0.0.1", instance.port)
            self.mta_faults[server.name] = CsvJournal(
                inside(self.run_dir, f"faults-{server.name}.csv"), FAULT_FIELDS
            )
        if self.mtas:
            self.event("mtas_ready", mtas={n: m.port for n, m in self.mtas.items()})

    def _mta_fault(self, fault: TimedFault) -> None:
        """mta-stop / mta-abort now, and mta-start after the duration: a real outage."""
        instance = self.mtas[fault.target]
        journal = self.mta_faults[fault.target]
        kind = fault.body["kind"]
        if kind == "mta-start":
            instance.start(grace_s=5.0)
            journal.write((stamp(), fault.target, 0, fault.body["stops"], "stop",
                           fault.body["fault_id"], "schedule", "{}"))  # fmt: skip
            fault.status = "started"
            return
        fault_id = f"{kind}-{len(self.timeline)}"
        params = {"duration": fault.body.get("duration")}
        journal.write((stamp(), fault.target, 0, kind, "start", fault_id, "schedule",
                       json.dumps(params)))  # fmt: skip
        instance.halt("stop" if kind == "mta-stop" else "abort")
        fault.status = f"{kind} done"
        if fault.body.get("duration"):
            restart = {"kind": "mta-start", "stops": kind, "fault_id": fault_id}
            self.timeline.append(TimedFault(fault.at + fault.body["duration"], fault.target,
                                            restart))  # fmt: skip

    def _wait_for_mta_queues(self) -> None:
        """Let running MTAs hand on what they queued (within the drain time)."""
        deadline = time.time() + self.scenario.campaign.drain_s
        for instance in self.mtas.values():
            while not self.interrupted and time.time() < deadline and instance.listening():
                if not instance.queued():
                    break
                time.sleep(0.2)

    def _stop_mtas(self) -> None:
        """Stop every instance (abort if stop fails), then record what is stuck inside."""
        for name, instance in self.mtas.items():
            instance.stop()
            if instance.running():
                instance.abort()
            stuck = instance.queued()
            journal = CsvJournal(inside(self.run_dir, f"mta-queue-{name}.csv"), MTA_QUEUE_FIELDS)
            for msg_id, state in stuck:
                journal.write((stamp(), name, msg_id, state))
            journal.close()
            self.event("mta_queue_at_end", mta=name, messages=len(stuck))
            if stuck:
                self.say(f"postfix {name}: {len(stuck)} messages still queued at the end")
            troubles = instance.troubles()
            if troubles:
                self.event("mta_log_troubles", mta=name, lines=troubles[:10])
                for line in troubles[:3]:
                    self.say(f"postfix {name} logged {line}")
        for journal in self.mta_faults.values():
            journal.close()

    def _ready_line(self, child: Child) -> dict[str, Any]:
        assert child.proc.stdout is not None
        deadline = time.time() + READY_TIMEOUT_S
        while time.time() < deadline and not self.interrupted:
            readable, _, _ = select.select([child.proc.stdout], [], [], 0.2)
            if readable:
                line = child.proc.stdout.readline()
                if line:
                    return dict(json.loads(line))
                break
            if child.proc.poll() is not None:
                break
        log = inside(self.run_dir, "logs", f"{child.name}.log").read_text().strip().splitlines()
        why = log[-1] if log else f"exit code {child.proc.poll()}"
        raise SetupError(f"sink {child.name} did not start: {why}")

    def _write_scenario(self) -> None:
        """The scenario as run: overrides applied, local sinks' real ports filled in."""
        resolved = json.loads(json.dumps(self.raw))
        for server in resolved.get("servers", []):
            if server.get("name") in self.addresses:
                server["host"], server["port"] = self.addresses[server["name"]]
        self.scenario_file = self.run_dir / "scenario.yaml"
        self.scenario_file.write_text(yaml.safe_dump(redact(resolved), sort_keys=False))

    # -- pre-flight check and health probes -------------------------------------------

    def _preflight(self) -> None:
        """`maildrill check` over the servers, now that the sinks listen: preflight.json,
        flags printed as warnings, or fatal with `strict_preflight: true`."""
        try:
            targets = preflight.targets_of(self.scenario, self.addresses)
        except preflight.TargetError as exc:
            raise SetupError(f"pre-flight: {exc}") from None
        facts, result = preflight.check(targets, expect=preflight.expectations_of(self.scenario))
        report = json.dumps(preflight.as_json(facts, result), indent=2)
        (self.run_dir / "preflight.json").write_text(report + "\n")
        self.event("preflight", flags=[f.code for f in result.flags])
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
        for name, instance in self.mtas.items():
            for line in instance.troubles()[:3]:
                self.say(f"pre-flight WARNING: postfix {name} logged {line}")
                if self.scenario.strict_preflight:
                    raise SetupError(f"pre-flight check failed (strict_preflight): postfix "
                                     f"{name} logged {line}")  # fmt: skip

    def _start_prober(self) -> None:
        """Health probes (loadtest.prober) in a process of their own; probes.csv."""
        if self.scenario.probe_interval_ms <= 0 or self.interrupted:
            return
        cmd = [sys.executable, "-m", "loadtest.prober", "--scenario", str(self.scenario_file),
               "--out", str(self.run_dir)]  # fmt: skip
        self._spawn("prober", "prober", cmd)

    # -- Locust -------------------------------------------------------------------------

    def _start_locust(self) -> None:
        base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
        args = [
            *base,
            "--scenario", str(self.scenario_file),
            "--journal-dir", str(self.run_dir),
            "--run-id", self.run_id,
            "--csv", str(self.run_dir / "locust"),
        ]  # fmt: skip
        if self.web:
            port = free_port()
            args += ["--web-host", "127.0.0.1", "--web-port", str(port), "--autostart",
                     "--autoquit", "10"]  # fmt: skip
            self.say(f"Locust web UI: http://127.0.0.1:{port}/")
        else:
            args += ["--headless", "--only-summary"]
        workers = self.scenario.workers
        if workers:
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
                self._spawn("worker", f"locust-worker-{i + 1}", worker)
        self.locust = self._spawn("locust", "locust", args)

    def _wait_for_t0(self) -> None:
        run_file = self.run_dir / "run.json"
        deadline = time.time() + READY_TIMEOUT_S + 10 * self.scenario.workers
        while not run_file.exists():
            if self.interrupted:
                return
            if self.locust.proc.poll() is not None or time.time() > deadline:
                log = (self.run_dir / "logs" / "locust.log").read_text().strip().splitlines()
                why = log[-1] if log else "no output"
                raise SetupError(f"Locust did not start the campaign: {why}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one call; let it land
        run = json.loads(run_file.read_text())
        self.t0 = float(run["t0"])
        self.planned = int(run["planned"])
        for fault in self.scenario.faults:
            self.timeline.append(TimedFault(fault.at, fault.target, fault.body()))
        self.timeline.sort(key=lambda f: f.at)

    # -- during the run -----------------------------------------------------------------

    def _follow(self) -> None:
        if self.t0 is None:
            return
        progress = Progress(self.run_dir / "attempts.csv")
        schedule_s = self.scenario.campaign.build_schedule().duration_s
        planned_s = schedule_s + self.scenario.campaign.drain_s
        last_print = 0.0
        while not self.interrupted and not self.aborted:
            now = time.time()
            for fault in self.timeline:
                if fault.sent_at is None and now >= self.t0 + fault.at and not self.aborted:
                    self._send_fault(fault)
            for child in self.children:
                if child.role == "locust" or child.died_at is not None:
                    continue
                code = child.proc.poll()
                # A worker leaves with 0 when the master tells it to at the end.
                if code is not None and (child.role == "sink" or code != 0):
                    child.died_at = now
                    who = {"sink": {"sink": child.name}, "worker": {"worker": child.name}}
                    self.event(f"{child.role}_died", **who.get(child.role, {"name": child.name}),
                               exit_code=code, at_s=round(now - self.t0, 3))  # fmt: skip
                    what = {"sink": "sink", "worker": "Locust worker"}.get(child.role, child.role)
                    self.say(f"\n{what} {child.name} died (exit {code}); going on")
            if self.locust.proc.poll() is not None:
                break
            if now - last_print >= (1.0 if self.out.isatty() else 5.0):
                progress.poll()
                self._print_progress(progress, now - self.t0, planned_s)
                last_print = now
            time.sleep(0.05)
        progress.poll()
        self._print_progress(progress, time.time() - self.t0, planned_s, final=True)
        if not self.interrupted and not self.aborted:
            self._faults_never_sent(time.time() - self.t0)

    def _faults_never_sent(self, ended_s: float) -> None:
        """A scheduled fault the load outran (Locust ended early) did not happen either.
        A restart of an MTA due after the end is not one: the MTA stops with the run."""
        for fault in self.timeline:
            if fault.sent_at is None and fault.body["kind"] != "mta-start":
                self._fault_failed(fault, f"never sent: the load ended at {ended_s:.1f} s")
                return

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
                    url = f"http://127.0.0.1:{self.controls[name]}/status"
                    request = urllib.request.Request(url, headers=auth_header(self.token))
                    with urllib.request.urlopen(request, timeout=2) as response:
                        depth = json.loads(response.read())["relay"]["depth"]
                except (OSError, ValueError, KeyError):
                    break  # a dead sink: nothing to wait for
                if depth == 0 or time.time() > deadline:
                    break
                time.sleep(0.2)
            self.event("relay_queue_at_end", sink=name, depth=depth)
            if depth:
                self.say(f"backup {name}: {depth} messages still queued at the end (stranded)")

    def _send_fault(self, fault: TimedFault) -> None:
        fault.sent_at = time.time()
        if fault.target in self.mtas:
            try:
                self._mta_fault(fault)
            except PostfixError as exc:
                self._fault_failed(fault, str(exc))
                return
            self.event("fault_sent", target=fault.target, kind=fault.body["kind"], at_s=fault.at,
                       status=fault.status)  # fmt: skip
            return
        port = self.controls.get(fault.target)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/faults",
            data=json.dumps(fault.body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **auth_header(self.token)},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                fault.status = f"started {json.loads(response.read())['id']}"
        except urllib.error.HTTPError as exc:
            self._fault_failed(fault, f"the sink refused it: HTTP {exc.code} {_error_of(exc)}")
            return
        except (OSError, ValueError, KeyError) as exc:
            self._fault_failed(fault, f"the sink's control API did not answer: {exc}")
            return
        self.event("fault_sent", target=fault.target, kind=fault.body["kind"], at_s=fault.at,
                   status=fault.status)  # fmt: skip

    def _fault_failed(self, fault: TimedFault, why: str) -> None:
        """A drill without its fault measures nothing it claims to: record it, and stop the
        run (load, then sinks, journals kept); `maildrill run` exits 2."""
        kind = fault.body["kind"]
        fault.status = f"failed: {why}"
        self.aborted = f"fault {kind} on {fault.target} at {fault.at:g} s did not start: {why}"
        self.event("fault_failed", target=fault.target, kind=kind, at_s=fault.at, error=why)
        self.say(f"\n{self.aborted}; stopping the run")

    def _print_progress(
        self, p: Progress, elapsed: float, planned_s: float, final: bool = False
    ) -> None:
        width = 24
        share = min(1.0, max(0.0, elapsed / planned_s)) if planned_s else 1.0
        bar = "#" * int(share * width) + "-" * (width - int(share * width))
        rates = " ".join(f"{s} {n}/s" for s, n in sorted(p.rates().items())) or "-"
        active = [
            f"{f.body['kind']}@{f.target}"
            for f in self.timeline
            if f.sent_at is not None
            and f.body["kind"] != "mta-start"
            and (f.body.get("duration") is None or elapsed < f.at + f.body["duration"])
        ]
        line = (
            f"[{bar}] {elapsed:5.1f}/{planned_s:.0f} s  finished {p.finished}/{self.planned}  "
            f"attempts {p.attempts}  {rates}  faults: {', '.join(active) or 'none'}"
        )
        if self.out.isatty():
            self.out.write("\r" + line[:160].ljust(160) + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the end ------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Load first (it finishes its attempts and writes its stats), then the sinks."""
        load = [c for c in self.children if c.role in ("locust", "worker")]
        for child in load:
            child.signal(signal.SIGINT if self.interrupted else signal.SIGTERM)
        for child in load:
            code = child.stop(None, STOP_GRACE_S)  # signalled just above
            if child.role == "locust":
                self.locust_exit = code
        for child in self.children:
            if child.role == "prober":  # after the load, while the sinks still listen
                child.stop(signal.SIGTERM, 5.0)
        self._stop_mtas()  # before the sinks they relay to
        for child in self.children:
            if child.role == "sink":
                child.stop(signal.SIGTERM, 10.0)
        remove_private_dir(self.private_dir)

    def _write_harness(self) -> dict[str, Any]:
        deaths = [e for e in self.events if e["event"] == "sink_died"]
        lost_workers = [e for e in self.events if e["event"] == "worker_died"]
        harness = {
            "partial": bool(self.interrupted or self.aborted) or self.t0 is None,
            "interrupted_by": self.interrupted,
            "aborted_by": self.aborted,
            # Every writer has stopped: the journals as they are now are the run's record.
            "journals": journal_manifest(self.run_dir),
            "locust_exit_code": self.locust_exit,
            "sink_deaths": deaths,
            "workers_lost": lost_workers,
            "faults": [
                {"at_s": f.at, "target": f.target, "kind": f.body["kind"], "status": f.status}
                for f in self.timeline
            ],
            "events": self.events,
            "finished_at": time.time(),
        }
        (self.run_dir / "harness.json").write_text(json.dumps(harness, indent=2) + "\n")
        return harness


def _error_of(exc: urllib.error.HTTPError) -> str:
    """The control API's one-line reason ({"error": ...}), or the HTTP reason phrase."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        body = {}
    reason = body.get("error") if isinstance(body, dict) else None
    return " ".join(str(reason or exc.reason).split())[:300]
