"""Health probes during a run: what an external monitor would see of each server.

Every `interval` each server gets one probe: connect, EHLO, QUIT with aiosmtplib, within a
short timeout. Each probe is one row of `probes.csv` (appended and flushed per record):

    time, server, ok, phase, code, outcome, latency_ms, error

`time` is when the probe started (epoch seconds); `latency_ms` runs from there to the EHLO
reply, or to the failure; `phase` is how far it got (connect, greeting, ehlo; quit when
the server also answered QUIT within an interval); `outcome` is `ok` or how it failed
(refused, timeout, dropped, deferred, rejected), decided by exception type and reply code.

Probes of one server never overlap, like a monitor's: they start on a fixed grid of
`interval` ticks, and a probe that overruns its tick (a hang, up to the timeout) makes
the next start at the next free tick. A probe's QUIT waits at most one interval: the
verdict came with the EHLO reply, and a hang that begins between the two must not hold
the next probe back a whole timeout. It runs in a process of its own, never in Locust:

    python -m loadtest.prober --scenario reports/RUN/scenario.yaml --out reports/RUN
    python -m loadtest.prober --server primary=127.0.0.1:2525 --server ... --interval-ms 200

`maildrill run` starts it once the sinks listen and stops it (SIGTERM) after the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from loadtest.cli_args import server_args
from loadtest.outcomes import Phase
from loadtest.probing import ERRORS, classify
from loadtest.scenario import ScenarioError, load_scenario, parse_server_override
from maildrill.journal import CsvJournal
from maildrill.netaddr import is_loopback
from maildrill.records import ProbeRecord

JOURNAL_NAME = "probes.csv"


@dataclass(frozen=True)
class ProbeTarget:
    name: str
    host: str
    port: int
    helo_name: str = "maildrill.test"


async def probe(target: ProbeTarget, timeout_s: float, quit_wait_s: float) -> ProbeRecord:
    """Connect, EHLO, QUIT; never raises for the server's trouble.

    Each step has the timeout (aiosmtplib's own), so a hang reads as a timeout in the
    greeting, not in the connect. The verdict is known at the EHLO reply: its QUIT waits
    at most `quit_wait_s` (probe_loop: one interval), so a hang that starts between the two
    does not hold the next probe back a whole timeout (detection two timeouts late).
    """
    started_at = time.time()
    started = time.perf_counter()
    client = aiosmtplib.SMTP(
        hostname=target.host,
        port=target.port,
        local_hostname=target.helo_name,
        timeout=timeout_s,
        start_tls=False,
    )
    phase = Phase.CONNECT
    try:
        await client.connect()
        phase = Phase.EHLO
        reply = await client.ehlo()
    except asyncio.CancelledError:
        client.close()  # stopped mid-probe (a frozen server): leave no socket open
        raise
    except ERRORS as exc:
        latency = (time.perf_counter() - started) * 1000.0
        client.close()
        f = classify(exc, phase)
        return ProbeRecord(
            time=started_at,
            server=target.name,
            ok=False,
            phase=f.phase.value,
            code=f.code,
            outcome=f.outcome.value,
            latency_ms=round(latency, 3),
            error=f.error,
        )
    latency = (time.perf_counter() - started) * 1000.0
    reached = Phase.EHLO.value
    try:
        await client.quit(timeout=quit_wait_s)
        reached = "quit"
    except asyncio.CancelledError:
        client.close()
        raise
    except ERRORS:
        client.close()  # healthy enough: it answered EHLO
    return ProbeRecord(
        time=started_at,
        server=target.name,
        ok=True,
        phase=reached,
        code=reply.code,
        outcome="ok",
        latency_ms=round(latency, 3),
        error="",
    )


async def probe_loop(
    target: ProbeTarget,
    interval_s: float,
    timeout_s: float,
    journal: CsvJournal,
    counts: dict[str, int],
    origin: float,
    stop: asyncio.Event,
) -> None:
    """Probe `target` on the tick grid from `origin` (monotonic) until `stop`.

    `run` also cancels it; the event is the backstop: on Python 3.11 a cancel that lands
    as a connect completes can be lost inside `asyncio.wait_for` (aiosmtplib's connect).
    """
    while not stop.is_set():
        # A QUIT unanswered within a tick is left: the next probe is due.
        result = await probe(target, timeout_s, min(timeout_s, interval_s))
        if stop.is_set():
            break  # in flight when told to stop: not journaled, like a cancelled probe
        journal.write(result)
        counts[target.name] += 1
        ticks = math.floor((time.monotonic() - origin) / interval_s) + 1
        await asyncio.sleep(max(0.0, origin + ticks * interval_s - time.monotonic()))


async def run(
    targets: Sequence[ProbeTarget],
    interval_s: float,
    timeout_s: float,
    journal_path: Path,
    stop: asyncio.Event,
    duration_s: float | None = None,
) -> dict[str, int]:
    """Probe every target until `stop` is set (or `duration_s` passes); probes per server.

    A probe in flight when it stops is abandoned and not journaled.
    """
    journal = CsvJournal(journal_path, ProbeRecord)
    counts = dict.fromkeys((t.name for t in targets), 0)
    origin = time.monotonic()
    tasks = [
        asyncio.create_task(probe_loop(t, interval_s, timeout_s, journal, counts, origin, stop))
        for t in targets
    ]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [stopper, *tasks], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done - {stopper}:
            task.result()  # a probe loop ends only by raising (the journal failed): say so
    finally:
        stop.set()
        for task in [stopper, *tasks]:
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)
        journal.close()
    return counts


# -- the command --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.prober",
        description="Probe SMTP servers (connect, EHLO, QUIT) every interval; journal each "
        "probe to probes.csv. Stops on SIGTERM or SIGINT.",
    )
    server_args(
        parser,
        "probe its servers (with real ports)",
        "a server to probe, loopback only (repeatable)",
    )
    parser.add_argument("--interval-ms", type=float, help="default: the scenario's, or 500")
    parser.add_argument("--timeout-ms", type=float, help="default: the scenario's, or 1000")
    parser.add_argument("--out", type=Path, help="directory for probes.csv (default .)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    return parser.parse_args(argv)


def targets_from(args: argparse.Namespace) -> tuple[list[ProbeTarget], float, float]:
    """Targets, interval and timeout in seconds; raises ScenarioError on bad input."""
    interval_ms, timeout_ms = 500.0, 1000.0
    targets: list[ProbeTarget] = []
    if args.scenario is not None:
        scenario = load_scenario(args.scenario)
        interval_ms = float(scenario.probe_interval_ms)
        timeout_ms = float(scenario.probe_timeout_ms)
        for s in scenario.servers:
            if scenario.dns_named(s):
                continue  # at the address its name has, by --server: never the system's resolver
            if not s.port:
                raise ScenarioError(
                    f"{args.scenario}: server {s.name!r} has no port; use the scenario.yaml "
                    "of a run directory (real ports) or --server NAME=HOST:PORT"
                )
            targets.append(ProbeTarget(s.name, s.host, s.port, s.helo_name))
    for text in args.server:
        name, (host, port) = parse_server_override(text)
        if not is_loopback(host) or not 0 < port < 65536:
            raise ScenarioError(f"--server {text!r}: a loopback HOST:PORT is needed")
        targets = [t for t in targets if t.name != name] + [ProbeTarget(name, host, port)]
    interval_ms = args.interval_ms if args.interval_ms is not None else interval_ms
    timeout_ms = args.timeout_ms if args.timeout_ms is not None else timeout_ms
    if not targets:
        raise ScenarioError("nothing to probe: give --scenario or --server")
    if not (interval_ms > 0 and timeout_ms > 0):
        raise ScenarioError("--interval-ms and --timeout-ms must be > 0 (0 disables probes)")
    return targets, interval_ms / 1000.0, timeout_ms / 1000.0


async def _serve(
    targets: list[ProbeTarget],
    interval_s: float,
    timeout_s: float,
    path: Path,
    duration_s: float | None,
) -> dict[str, int]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = {
        "prober": {
            "servers": [{"name": t.name, "host": t.host, "port": t.port} for t in targets],
            "interval_ms": round(interval_s * 1000.0, 3),
            "timeout_ms": round(timeout_s * 1000.0, 3),
            "journal": str(path),
        }
    }
    print(json.dumps(ready), flush=True)
    return await run(targets, interval_s, timeout_s, path, stop, duration_s)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        targets, interval_s, timeout_s = targets_from(args)
    except ScenarioError as exc:
        print(f"maildrill prober: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(".")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"maildrill prober: cannot write to {out}: {exc.strerror}", file=sys.stderr)
        return 2
    path = out / JOURNAL_NAME
    counts = asyncio.run(_serve(targets, interval_s, timeout_s, path, args.duration))
    print(json.dumps({"stopped": counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
