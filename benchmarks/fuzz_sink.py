"""Fuzz a sink for longer than the test suite does: random SMTP sessions, then checks.

Run (from the repository root):

    .venv/bin/python benchmarks/fuzz_sink.py [--examples 5000] [--seconds 300]
                                             [--loop uvloop|asyncio] [--batch 200]

Each example is a script from tests/fuzz_smtp.py (valid and invalid commands, AUTH
exchanges, DATA with random bodies, random bytes) spoken over one connection to one sink
in its own process (`python -m sinks`, as a drill runs it), every reply line checked as it
comes (well formed; refusals carry an enhanced code; bad input is refused; the sink closes
only after 221, 421 or aiosmtpd's 502). After each example: the sink is up, no session
raised an exception (its log), the session is gone, another client can send, and the
journals agree with what the fuzzing client saw: one receipt per 250 after DATA, of the
same size; one refusal row per 4xx/5xx; the counters equal the journals.

It stops at the first failure, which hypothesis shrinks and prints, or when the examples
or the seconds run out (whichever first; batches of --batch examples). The last line is
the ratios: `crashes` (sink deaths plus session exceptions it logged) and `consistent`
(1 when every check held). Exit status 1 when either is off.
"""

from __future__ import annotations

import argparse
import csv
import io
import smtplib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzz_smtp import FUZZ_SINK, SinkProcess, Step, run_script, scripts  # noqa: E402
from tests.helpers import message  # noqa: E402

AFTER = message("after").encode()


class Fuzz:
    """The sink under fuzz, what the scripts saw, and the checks after each one."""

    def __init__(self, sink: SinkProcess) -> None:
        self.sink = sink
        self.examples = 0
        self.accepted = 0
        self.codes: Counter[int] = Counter()
        self.closes: Counter[int] = Counter()
        self.crashes = 0
        self._offset = 0  # bytes of the receipts journal already read
        self._size = 0  # the size column's index
        self._counted: dict[str, tuple[int, int]] = {}  # journal: (bytes read, rows)
        self._logged = 0  # session exceptions already counted

    def rows(self, journal: str) -> int:
        """Rows in a journal, reading only what was added since the last call."""
        offset, rows = self._counted.get(journal, (0, -1))  # -1: the header row
        path = self.sink.journal_dir / f"{journal}-{self.sink.name}.csv"
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                added = f.read()
            offset, rows = offset + len(added), rows + added.count(b"\n")
            self._counted[journal] = (offset, rows)
        return max(rows, 0)

    def new_receipt_sizes(self) -> list[int]:
        """The size column of the receipts journaled since the last call."""
        data = (self.sink.journal_dir / f"receipts-{self.sink.name}.csv").read_bytes()
        rows = list(csv.reader(io.StringIO(data[self._offset :].decode("utf-8", "replace"))))
        if not self._offset:
            self._size = rows.pop(0).index("size")
        self._offset = len(data)
        return [int(row[self._size]) for row in rows]

    def session_exceptions(self) -> int:
        logged = self.sink.stderr.read_text(errors="replace").count("SMTP session exception")
        new, self._logged = logged - self._logged, logged
        return new

    def check(self, script: list[Step]) -> None:
        sink = self.sink
        receipts, refusals = self.rows("receipts"), self.rows("refusals")
        out = run_script(sink.port, script)
        self.examples += 1
        self.codes.update(out.codes)
        if out.closed_after is not None:
            self.closes[out.closed_after] += 1
        if not sink.alive():
            self.crashes += 1
            raise AssertionError(f"the sink died (exit {sink.proc.returncode})")
        new = self.session_exceptions()
        if new:
            self.crashes += new
            raise AssertionError(f"{new} session exception(s) in the sink's log")
        assert not out.problems, out.problems
        deadline = time.monotonic() + 5
        while sink.status()["counters"]["active_sessions"]:
            assert time.monotonic() < deadline, "a session left open"
            time.sleep(0.005)
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], AFTER)
        self.accepted += len(out.accepted)
        assert self.rows("receipts") - receipts == len(out.accepted) + 1, "receipts"
        sizes = [len(body) for body in out.accepted] + [len(AFTER)]
        assert self.new_receipt_sizes() == sizes, "receipt sizes"
        assert self.rows("refusals") - refusals == out.refusals, "refusals journaled"
        counters = sink.status()["counters"]
        assert counters["accepted"] == self.rows("receipts"), "accepted counter"
        assert counters["deferred"] + counters["rejected"] == self.rows("refusals")


def describe(exc: BaseException) -> list[str]:
    """An exception's message and hypothesis' notes (the failing script), nested ones too."""
    lines = [f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", ())]
    for inner in getattr(exc, "exceptions", ()):
        lines += ["  " + line for line in describe(inner)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="at most (default 5000)")
    parser.add_argument("--seconds", type=float, default=300, help="at most (default 300)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--batch", type=int, default=200, help="examples per hypothesis run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="maildrill-fuzz-") as tmp:
        sink = SinkProcess(dict(FUZZ_SINK), Path(tmp), loop=args.loop)
        fuzz = Fuzz(sink)
        failure = ""
        started = time.monotonic()
        print(f"fuzzing sink {sink.name} ({args.loop}) on 127.0.0.1:{sink.port}", flush=True)
        try:
            while fuzz.examples < args.examples and time.monotonic() - started < args.seconds:
                batch = min(args.batch, args.examples - fuzz.examples)
                run = settings(
                    max_examples=batch,
                    deadline=None,
                    database=None,
                    print_blob=True,
                    suppress_health_check=list(HealthCheck),
                )(given(script=scripts)(fuzz.check))
                try:
                    run()
                except (AssertionError, OSError, smtplib.SMTPException, ExceptionGroup) as exc:
                    # A check failed; hypothesis shrank the script and noted it on exc.
                    failure = f"{type(exc).__name__}: {exc}"
                    print("\n".join(describe(exc)), flush=True)
                    break
                rate = fuzz.examples / (time.monotonic() - started)
                print(f"  {fuzz.examples} examples, {rate:.0f}/s, none failed", flush=True)
        finally:
            seconds = time.monotonic() - started
            code = sink.stop()
        if code != 0:
            fuzz.crashes += 1
            failure = failure or f"the sink exited with {code} on SIGTERM"

    print(f"{fuzz.examples} examples (shrinking included) in {seconds:.0f} s")
    print(f"messages accepted by the fuzzing client: {fuzz.accepted}")
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(fuzz.codes.items()))
    print(f"replies by code: {codes}")
    closes = ", ".join(f"after {code}: {n}" for code, n in sorted(fuzz.closes.items()))
    print(f"sessions the sink closed: {closes or 'none'}")
    print(f"found: {failure or 'nothing'}")
    consistent = int(not failure)
    print(f"ratio crashes={fuzz.crashes} consistent={consistent}")
    return 0 if consistent and not fuzz.crashes else 1


if __name__ == "__main__":
    sys.exit(main())
