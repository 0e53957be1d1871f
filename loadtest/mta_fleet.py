"""The Postfix instances under test: built and started (each with a guard that stops it if
maildrill dies, loadtest.mta_guard), stopped and restarted as faults,
given the drain time to hand on their queues, and what they still hold at the end.

Each instance's faults go to faults-NAME.csv in the sinks' format (worker 0, origin
schedule), so the analysis finds an MTA's outage where it finds a sink's.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.dkim_keys import DkimKey, key_id, make_keys, published_records, signers
from loadtest.mta_guard import GuardError, stand_down, start_guard
from loadtest.mta_identity import identities
from loadtest.opendkim import OpenDkim, OpenDkimError, write_keys
from loadtest.postfix import PostfixError, PostfixInstance, postfix_binary
from loadtest.runlog import RunLog, SetupError
from loadtest.scenario import Scenario
from loadtest.server_spec import DkimSpec
from loadtest.sink_fleet import Address
from loadtest.supervise import Child, Supervisor
from loadtest.timeline import MtaRestart, MtaStop
from maildrill.journal import CsvJournal
from maildrill.paths import inside
from maildrill.records import FaultRecord, MtaQueueRecord

KEY_DIR = "dkim"  # the run's DKIM keys: NAME.private while it runs, NAME.txt kept


class MtaFleet:
    def __init__(
        self, scenario: Scenario, run_dir: Path, log: RunLog, children: Supervisor
    ) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.log = log
        self.children = children
        self.instances: dict[str, PostfixInstance] = {}
        self.faults: dict[str, CsvJournal] = {}
        self.keys: dict[tuple[str, str], DkimKey] = {}
        self.key_files: dict[tuple[str, str], Path] = {}
        self.opendkim: dict[str, OpenDkim] = {}  # by instance, started before it
        self.guards: dict[str, Child] = {}  # by instance: each stops it if maildrill dies

    def make_keys(self) -> dict[str, str]:
        """The DKIM keys the instances sign with, made for this run and written to the
        run's `dkim/`; what the run's zone publishes of them (owner name: TXT value), for
        the DNS server, which starts before the MTAs."""
        specs = signers(self.scenario.servers)
        if not specs:
            return {}
        self.keys = make_keys(specs.values())
        self.key_files = write_keys(self.keys, inside(self.run_dir, KEY_DIR))
        self.log.event(
            "dkim_keys",
            keys={k.record_name: {"published": k.published_b64 is not None,
                                  "matching": k.published_b64 == k.public_b64}
                  for k in self.keys.values()},
        )  # fmt: skip
        return published_records(self.keys.values())

    def start(self, addresses: dict[str, Address]) -> None:
        """Build, check and start a Postfix instance per `postfix:` server, at the port
        `addresses` chose for it, relaying to the sinks there; SetupError if one fails."""
        who = identities(self.scenario.servers)
        for server in self.scenario.servers:
            spec = server.postfix
            if spec is None:
                continue
            identity = who[server.name]
            milter = self._start_signer(server.name, spec.dkim) if spec.dkim else ""
            instance = PostfixInstance(
                name=server.name,
                base=inside(self.run_dir, f"postfix-{server.name}"),
                port=addresses[server.name][1],
                relay=addresses[spec.relay],
                hostname=identity.hostname,
                settings={k: str(v) for k, v in spec.settings.items()},
                routes={d: addresses[sink] for d, sink in spec.routes.items()},
                allow_remote=self.scenario.allow_remote,
                source_address=identity.source_address,
                helo_name=identity.helo_name,
                milter=milter,
            )
            self.instances[server.name] = instance  # stopped at the end whatever happens next
            try:
                instance.write()
                instance.check()
                self.guards[server.name] = start_guard(
                    self.children, server.name, postfix_binary(), instance.config_dir
                )
                instance.start()
            except (PostfixError, GuardError) as exc:
                raise SetupError(str(exc)) from None
            addresses[server.name] = ("127.0.0.1", instance.port)
            self.faults[server.name] = CsvJournal(
                inside(self.run_dir, f"faults-{server.name}.csv"), FaultRecord
            )
        if self.instances:
            self.log.event("mtas_ready", mtas={n: m.port for n, m in self.instances.items()})
            self.log.event(
                "mta_identity",
                mtas={n: {"source_address": who[n].source_address, "helo_name": who[n].helo_name}
                      for n in self.instances},
            )  # fmt: skip

    def _start_signer(self, server: str, spec: DkimSpec) -> str:
        """Its OpenDKIM, started and listening; its milter address. SetupError if not."""
        if not self.key_files:
            self.make_keys()  # not made before the DNS server: nothing to publish then
        ident = key_id(spec)
        signer = OpenDkim(
            server=server,
            directory=inside(self.run_dir, f"postfix-{server}", "opendkim"),
            key_file=self.key_files[ident],
            selector=self.keys[ident].selector,
            domain=self.keys[ident].domain,
        )
        self.opendkim[server] = signer  # stopped at the end whatever happens next
        try:
            signer.write()
            signer.check_signs()
            signer.start(self.children)
        except OpenDkimError as exc:
            raise SetupError(str(exc)) from None
        return signer.milter

    # -- faults ---------------------------------------------------------------------------

    def halt(self, stop: MtaStop) -> None:
        """`postfix stop` or `abort` now: a real outage. PostfixError if it did not happen."""
        params = {"duration": stop.duration}
        self.faults[stop.target].write(
            FaultRecord(time.time(), stop.target, 0, stop.kind, "start", stop.fault_id,
                        "schedule", json.dumps(params))
        )  # fmt: skip
        self.instances[stop.target].halt(stop.how)

    def restart(self, restart: MtaRestart) -> None:
        """`postfix start` after the stop's duration (its own smtpd children given 5 s to
        leave the port); the stop's `stop` row once it listens again."""
        self.instances[restart.target].start(grace_s=5.0)
        ends = restart.ends
        self.faults[restart.target].write(
            FaultRecord(time.time(), restart.target, 0, ends.kind, "stop", ends.fault_id,
                        "schedule", "{}")
        )  # fmt: skip

    # -- the end --------------------------------------------------------------------------

    def wait_for_queues(self, drain_s: float, stopping: Callable[[], bool]) -> None:
        """Let running MTAs hand on what they queued (within the drain time)."""
        deadline = time.time() + drain_s
        for instance in self.instances.values():
            while not stopping() and time.time() < deadline and instance.listening():
                if not instance.queued():
                    break
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop every instance (abort if stop fails), then its OpenDKIM, then record what
        is stuck inside; once every OpenDKIM is gone, the private DKIM keys are removed
        (their public halves stay). The signers are stopped and the keys removed whatever
        befell the instances (a `postfix stop` that timed out, a journal not written)."""
        failed: Exception | None = None
        try:
            for name, instance in self.instances.items():
                try:
                    self._stop_instance(name, instance)
                except (OSError, subprocess.SubprocessError) as exc:
                    failed = failed or exc  # the other instances are stopped all the same
        finally:
            for signer in self.opendkim.values():  # each after its Postfix, or it never started
                signer.stop()
            for path in self.key_files.values():
                path.unlink(missing_ok=True)
            for journal in self.faults.values():
                journal.close()
        if failed is not None:
            raise failed

    def _stop_instance(self, name: str, instance: PostfixInstance) -> None:
        instance.stop()
        if instance.running():
            instance.abort()
        if name in self.guards:  # stopped: its guard leaves (one that could not stop it stays)
            stand_down(self.guards.pop(name))
        if name in self.opendkim:
            self.opendkim[name].terminate()  # waited for below, all together
        stuck = instance.queued()
        journal = CsvJournal(inside(self.run_dir, f"mta-queue-{name}.csv"), MtaQueueRecord)
        for held in stuck:
            journal.write(
                MtaQueueRecord(time.time(), name, held.msg_id, held.state, " ".join(held.pending))
            )
        journal.close()
        self.log.event("mta_queue_at_end", mta=name, messages=len(stuck))
        if stuck:
            self.log.say(f"postfix {name}: {len(stuck)} messages still queued at the end")
        troubles = instance.troubles()
        if troubles:
            self.log.event("mta_log_troubles", mta=name, lines=troubles[:10])
            for line in troubles[:3]:
                self.log.say(f"postfix {name} logged {line}")
