"""Soak: run the bundled `soak` scenario for a bounded time and watch what grows.

Run (from the repository root):

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 300] [--every 10] [--workers 0]

It runs `maildrill run soak` with the campaign cut to `--minutes` at `--rate` msgs/s (the
run ends by itself within that bound; past it plus a grace the benchmark interrupts it) and
every `--every` seconds samples:

- the RSS (/proc/PID/status VmRSS) and open file descriptors (/proc/PID/fd) of EVERY
  maildrill process: the orchestrator and all its descendants (Locust, its workers, the
  sinks and their forks, the prober), found again at each sample by walking /proc's ppids;
- the journals of the run directory: bytes and lines written per second (all of them);
- the sender's latency (`end - start`) p50/p95 and lateness (`start - intended`) p95 of
  the attempts that ended in the interval, and accepted per second, from attempts*.csv
  read as it grows;
- the machine's 1-minute load (/proc/loadavg): on a shared machine a step in latency
  with a step in load is someone else's work, not the harness growing.

It prints a table over time, then the verdict, judged on the samples while the load runs
(not the final analysis, which the orchestrator does after the load and which is another
benchmark's subject, analysis_scale.py), after the first `--settle` seconds:

- memory flat: per process, its RSS at the end (the mean of the last three samples) at
  most 5 % (`--memory-growth`) above its RSS at the end of the settling;
- no fd growth: per process, its open files at the end at most its most in the first
  sampled minute after settling (plus 2: a connection being opened);
- no latency growth: the median of the intervals' p95 latency in the last third at most
  1.5x (plus 2 ms, loopback times are a few ms) the median in the first third after
  settling; the same for lateness.

The last line is `verdict: PASS` or `verdict: FAIL (...)`; exit 1 on FAIL, 2 when the run
could not be started or measured.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_S = 120  # from the command to the campaign's start, at most
GRACE_S = 180  # past the campaign and its drain: the run's own analysis and reports
LATENCY_FACTOR, LATENCY_SLACK_MS = 1.5, 2.0
FD_SLACK = 2


# -- processes --------------------------------------------------------------------------


def children_of() -> dict[int, list[int]]:
    """Every process's children, from /proc/PID/stat (the ppid follows the comm's ')')."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    kids = children_of()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(kids.get(pid, []))
    return sorted(found)


def label(pid: int, root: int) -> str:
    """What the process is, from its command line: orchestrator, locust, sink-NAME, ..."""
    if pid == root:
        return "orchestrator"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    joined = " ".join(argv)
    if "-m locust" in joined:
        return "locust-worker" if "--worker" in argv else "locust"
    if "-m sinks" in joined:
        config = next((a for a in argv if a.endswith(".yaml")), "sink")
        return f"sink-{Path(config).stem}"
    if "loadtest.prober" in joined:
        return "prober"
    if "maildrill.dns" in joined:
        return "dns"
    return Path(argv[0]).name if argv else "?"


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# -- journals ---------------------------------------------------------------------------


@dataclass
class JournalReader:
    """The run directory's journals read as they grow: bytes and lines since the last
    read; the attempts' latency, lateness and accepted count of the rows completed."""

    run_dir: Path
    offsets: dict[Path, int] = field(default_factory=dict)
    headers: dict[Path, list[str]] = field(default_factory=dict)

    def read(self) -> tuple[int, int, list[float], list[float], int]:
        grown = lines = accepted = 0
        latency: list[float] = []
        lateness: list[float] = []
        for path in sorted(self.run_dir.glob("*.csv")):
            offset = self.offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                continue
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                continue
            self.offsets[path] = offset + cut
            grown += cut
            lines += chunk.count(b"\n", 0, cut)
            if path.name.startswith("attempts"):
                accepted += self._attempts(path, chunk[:cut], latency, lateness)
        return grown, lines, latency, lateness, accepted

    def _attempts(
        self, path: Path, chunk: bytes, latency: list[float], lateness: list[float]
    ) -> int:
        rows = csv.reader(io.StringIO(chunk.decode("utf-8", "replace"), newline=""))
        accepted = 0
        for row in rows:
            if path not in self.headers:
                self.headers[path] = row
                continue
            col = dict(zip(self.headers[path], row, strict=False))
            try:
                start, end, intended = (float(col[k]) for k in ("start", "end", "intended"))
            except (KeyError, ValueError):
                continue
            if col.get("attempt") == "1":
                lateness.append((start - intended) * 1000)
            if col.get("outcome") == "accepted":
                accepted += 1
                latency.append((end - start) * 1000)
        return accepted


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- samples and the verdict ------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the run started
    procs: dict[str, tuple[int, int]]  # "label pid" -> (RSS kB, fds)
    bytes_per_s: float
    lines_per_s: float
    accepted_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    late_p95_ms: float | None
    load1: float  # the machine's 1-minute load: others' work shows as latency, not growth


def judge(samples: list[Sample], settle_s: float, memory_growth: float) -> list[str]:
    """What grew (empty: nothing did), on the samples taken after `settle_s`."""
    after = [s for s in samples if s.t >= settle_s]
    if len(after) < 6:
        return [f"only {len(after)} samples after the first {settle_s:g} s: too short to judge"]
    failed = []
    base, last = after[0], after[-3:]
    first_minute = [s for s in after if s.t < after[0].t + 60]
    for key, (rss0, _) in base.procs.items():
        ends = [s.procs[key] for s in last if key in s.procs]
        if len(ends) < len(last):
            continue  # it ended before the load did (a process of the start only)
        rss_end = statistics.mean(r for r, _ in ends)
        growth = (rss_end - rss0) / rss0
        if growth > memory_growth:
            failed.append(f"{key} RSS {rss0 / 1024:.1f} -> {rss_end / 1024:.1f} MB "
                          f"(+{growth:.1%})")  # fmt: skip
        fd_top = max(s.procs[key][1] for s in first_minute if key in s.procs)
        fd_end = max(f for _, f in ends)
        if fd_end > fd_top + FD_SLACK:
            failed.append(f"{key} fds {fd_top} -> {fd_end}")
    third = max(1, len(after) // 3)
    for name, pick in (("p95 latency", "p95_ms"), ("p95 lateness", "late_p95_ms")):
        early = [v for s in after[:third] if (v := getattr(s, pick)) is not None]
        late = [v for s in after[-third:] if (v := getattr(s, pick)) is not None]
        if not early or not late:
            failed.append(f"{name}: no attempts measured")
            continue
        before, now = statistics.median(early), statistics.median(late)
        if now > before * LATENCY_FACTOR + LATENCY_SLACK_MS:
            failed.append(f"{name} {before:.1f} -> {now:.1f} ms")
    return failed


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(samples: list[Sample]) -> str:
    keys = sorted({k for s in samples for k in s.procs})
    head = ["t s", *[f"{k} MB/fds" for k in keys], "journal kB/s", "lines/s", "acc/s",
            "lat p50", "lat p95", "late p95", "load"]  # fmt: skip
    rows = [head]
    for s in samples:
        cells = [f"{s.t:.0f}"]
        for k in keys:
            got = s.procs.get(k)
            cells.append("-" if got is None else f"{got[0] / 1024:.1f}/{got[1]}")
        cells += [f"{s.bytes_per_s / 1024:.1f}", f"{s.lines_per_s:.0f}",
                  f"{s.accepted_per_s:.0f}", fmt(s.p50_ms), fmt(s.p95_ms),
                  fmt(s.late_p95_ms), f"{s.load1:.2f}"]  # fmt: skip
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


# -- the run ----------------------------------------------------------------------------


def command(args: argparse.Namespace, out: Path) -> list[str]:
    duration = int(args.minutes * 60)
    return [sys.executable, "-m", "loadtest.cli", "run", args.scenario, "--out", str(out),
            "--workers", str(args.workers),
            "--set", f"campaign.schedule.0.duration_s={duration}",
            "--set", f"campaign.schedule.0.rate={args.rate:g}",
            "--set", f"campaign.drain_s={args.drain:g}"]  # fmt: skip


def campaign_start(run_dir: Path) -> float:
    """run.json's t0 (0 until the sender wrote it)."""
    try:
        return float(json.loads((run_dir / "run.json").read_text())["t0"])
    except (OSError, ValueError, KeyError):
        return 0.0


def sample(root: int, reader: JournalReader, t: float, dt: float) -> Sample:
    procs = {}
    for pid in tree(root):
        rss, fds = rss_kb(pid), fd_count(pid)
        if rss is not None and fds is not None:
            procs[f"{label(pid, root)}:{pid}"] = (rss, fds)
    grown, lines, latency, lateness, accepted = reader.read()
    dt = max(dt, 1e-3)
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    return Sample(t, procs, grown / dt, lines / dt, accepted / dt, percentile(latency, 50),
                  percentile(latency, 95), percentile(lateness, 95), load1)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the load's length")
    parser.add_argument("--rate", type=float, default=300.0, help="msgs/s, constant")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds not judged")
    parser.add_argument("--memory-growth", type=float, default=0.05, help="allowed RSS growth")
    parser.add_argument("--drain", type=float, default=10.0, help="the campaign's drain_s")
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes")
    parser.add_argument("--scenario", default="soak", help="bundled name or file")
    parser.add_argument("--out", type=Path, help="run directory (default: temporary)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.every <= 0:
        print("soak: --minutes, --rate and --every must be above 0", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="soak-")) / "run"
    cmd = command(args, out)
    print(" ".join(cmd), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = (out.parent / "soak-run.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    reader = JournalReader(out)
    samples: list[Sample] = []
    t0 = 0.0  # the campaign's start (run.json), once the sender has written it
    last = time.time()
    bound = time.time() + SETUP_S + args.minutes * 60 + args.drain
    try:
        while proc.poll() is None and time.time() < bound:
            time.sleep(args.every)
            now = time.time()
            if not t0:
                t0 = campaign_start(out)
                if t0:
                    bound = t0 + args.minutes * 60 + args.drain + 5
                    reader.read()  # what came before t0 is the set-up's
                last = now
                continue
            s = sample(proc.pid, reader, now - t0, now - last)
            last = now
            samples.append(s)
            print(f"t={s.t:.0f}s rss={sum(r for r, _ in s.procs.values()) / 1024:.0f} MB "
                  f"procs={len(s.procs)} acc/s={s.accepted_per_s:.0f} "
                  f"p95={fmt(s.p95_ms)} ms", flush=True)  # fmt: skip
        # The load is over (or its bound is): the run analyses its journals and ends.
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"soak: the run outlived its bound by {GRACE_S} s; interrupting it")
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise
    finally:
        log.close()
    # Samples taken while the load ran (its length plus the drain), not the analysis after
    # (t is seconds since the campaign's start, run.json's t0).
    loaded = [s for s in samples if s.t <= args.minutes * 60 + args.drain]
    print(table(loaded))
    print(f"run directory {out} (exit {proc.returncode}); log {out.parent / 'soak-run.log'}")
    if not loaded:
        print("verdict: FAIL (no samples: the run did not start)")
        return 2
    # The last samples include the drain (no load): judge the constant-rate span only.
    steady = [s for s in loaded if s.t <= args.minutes * 60]
    failed = judge(steady, args.settle, args.memory_growth)
    if proc.returncode not in (0, 1):
        failed.append(f"maildrill run exited {proc.returncode}")
    print("verdict: PASS (memory flat, no fd growth, no latency growth)" if not failed
          else f"verdict: FAIL ({'; '.join(failed)})")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
