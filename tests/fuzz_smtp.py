"""SMTP sessions for fuzzing a sink: hypothesis strategies and a driver that checks replies.

A *script* is a list of steps spoken over one connection, one at a time (each waits for
its replies): a command line, good or bad; an AUTH exchange; a DATA transaction with its
body; or random bytes. The driver knows how many replies each step should get, so it can
check every reply line as it comes, and it knows which 250s answer a message, so the
sink's receipts journal can be held to them. Used by tests/integration/test_hostile_fuzz.py and, for
longer runs, by benchmarks/fuzz_sink.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.helpers import BadReply, RawClient

# What the fuzzed sink is configured with (the driver predicts 552s from SIZE).
FUZZ_SINK = {"name": "fuzz", "size_limit": 30_000, "auth": {"credentials": {"u": "p"}}}
SIZE_LIMIT = 30_000

KNOWN_VERBS = frozenset(
    b"AUTH DATA EHLO EXPN HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY".split()
)
# The sink closes after 221 (QUIT), 421, and aiosmtpd's 502 for too many unknown commands.
GOODBYE = b"Too many unrecognized commands, goodbye."
QUEUED = b"2.0.0 Ok: queued as "


def _short(data: bytes) -> str:
    """bytes for a failure report: long runs shortened, so hypothesis can print a script."""
    if len(data) <= 80:
        return repr(data)
    return f"{data[:40]!r} + ... ({len(data)} bytes) + {data[-20:]!r}"


@dataclass(frozen=True)
class Command:
    """One command line; `bad`: a sink must refuse it (4xx/5xx) whatever its state."""

    line: bytes
    bad: bool = False
    ending: bytes = b"\r\n"

    def __repr__(self) -> str:
        return f"Command({_short(self.line)}, bad={self.bad}, ending={self.ending!r})"


@dataclass(frozen=True)
class Auth:
    """An AUTH command, then `answers` to its 334 challenges ('*' once they run out)."""

    line: bytes
    answers: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"Auth({_short(self.line)}, ({', '.join(map(_short, self.answers))}))"


@dataclass(frozen=True)
class Data:
    """DATA, then (after a 354) `body` dot-stuffed and the final dot, in `cuts` writes."""

    body: bytes
    cuts: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"Data({_short(self.body)}, cuts={self.cuts})"


@dataclass(frozen=True)
class Garbage:
    """Random bytes, with every line whose verb a sink knows spoiled: each line is refused."""

    data: bytes

    def __repr__(self) -> str:
        return f"Garbage({_short(self.data)})"


Step = Command | Auth | Data | Garbage


@dataclass
class Outcome:
    """What one script saw: accepted message bodies, refusals, problems found."""

    accepted: list[bytes] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    replies: int = 0
    refusals: int = 0  # 4xx and 5xx replies
    closed_after: int | None = None  # the code of the last reply when the sink closed
    problems: list[str] = field(default_factory=list)


def dot_stuff(body: bytes) -> bytes:
    """RFC 5321 4.5.2, as a sender does it; `body` is empty or ends with CRLF."""
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


def verb(line: bytes) -> bytes:
    """The command word aiosmtpd sees in `line`."""
    return line.rstrip(b"\r\n").partition(b" ")[0].upper()


def spoil(data: bytes) -> bytes:
    """`data` with each line that starts with a known verb prefixed by 'X'."""
    lines = data.split(b"\n")
    return b"\n".join(b"X" + x if verb(x) in KNOWN_VERBS else x for x in lines)


def run_script(port: int, steps: list[Step], timeout: float = 3.0) -> Outcome:
    """Speak `steps` to the sink on `port`, then QUIT; check every reply; never raises for
    what the sink does (its problems are in the outcome)."""
    out = Outcome()
    conn = RawClient(port, timeout, strict=True)
    try:
        _expect(conn, out, bad=False)  # the banner
        for step in steps:
            if out.closed_after is not None:
                break
            _step(conn, out, step)
        if out.closed_after is None:
            # QUIT, and read what is left: its 221, or a 421 sent after the last reply read.
            with contextlib.suppress(OSError):
                conn.send(b"QUIT\r\n")
            _expect(conn, out, bad=False)
    except BadReply as exc:
        out.problems.append(str(exc))
    except TimeoutError:
        out.problems.append(f"no reply within {timeout} s")
    finally:
        conn.close()
    return out


def _expect(conn: RawClient, out: Outcome, bad: bool) -> int | None:
    """Read one reply, or the close; the code (None when closed)."""
    reply = conn.reply()
    if reply is None:
        out.closed_after = -1
        out.problems.append("the sink closed the connection without a reply")
        return None
    code, text = reply
    out.replies += 1
    out.codes[code] += 1
    if code >= 400:
        out.refusals += 1
    elif bad:
        out.problems.append(f"bad input accepted with {code} {text[:80]!r}")
    if code in (221, 421) or text.endswith(GOODBYE):
        try:
            after = conn.reply()
        except TimeoutError:
            out.problems.append(f"{code} {text!r}, and the connection stayed open")
        else:
            if after is not None:
                out.problems.append(f"{code} {text!r}, and then {after}")
        out.closed_after = code
    return code


def _step(conn: RawClient, out: Outcome, step: Step) -> None:
    if isinstance(step, Command):
        conn.send(step.line + step.ending)
        code = _expect(conn, out, step.bad)
        if code == 334:  # AUTH ... (a bare AUTH command reached a challenge): give up
            conn.send(b"*\r\n")
            _expect(conn, out, bad=True)
        elif code == 354:  # a DATA with an ending of its own: send an empty message
            conn.send(b".\r\n")
            _after_data(conn, out, b"")
    elif isinstance(step, Auth):
        conn.send(step.line + b"\r\n")
        answers = list(step.answers)
        while _expect(conn, out, bad=False) == 334:
            conn.send((answers.pop(0) if answers else b"*") + b"\r\n")
    elif isinstance(step, Data):
        conn.send(b"DATA\r\n")
        if _expect(conn, out, bad=False) != 354:
            return
        wire = dot_stuff(step.body) + b".\r\n"
        start = 0
        for cut in sorted({c % (len(wire) + 1) for c in step.cuts}):
            conn.send(wire[start:cut])
            start = cut
        conn.send(wire[start:])
        _after_data(conn, out, step.body)
    else:
        data = spoil(step.data)
        if not data.endswith(b"\n"):
            data += b"\r\n"
        conn.send(data)
        for _ in range(data.count(b"\n")):
            if out.closed_after is not None:
                break
            _expect(conn, out, bad=True)


def _after_data(conn: RawClient, out: Outcome, body: bytes) -> None:
    reply_before = out.replies
    code = _expect(conn, out, bad=False)
    if code is None:
        return
    too_big = len(dot_stuff(body)) > SIZE_LIMIT
    if code == 250:
        out.accepted.append(body)
        if too_big:
            out.problems.append(f"a message of {len(body)} bytes over SIZE got 250")
    elif code != 552 or not too_big:
        out.problems.append(f"message of {len(body)} bytes: {code} (reply {reply_before + 1})")


# -- strategies ------------------------------------------------------------------------


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\n", b"")


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


_hosts = st.one_of(
    st.sampled_from([b"client.test", b"[127.0.0.1]", b"[IPv6:::1]", b"x", b"h" * 300]),
    st.binary(max_size=30).map(_one_line),
)
_addresses = st.one_of(
    st.sampled_from(
        [
            b"a@example.com",
            b"first.last+tag@sub.example.test",
            b"",
            b"@",
            b"a@",
            b"@b.test",
            b"a@[127.0.0.1]",
            b'"q u"@example.com',
            b"a@b@c",
            b"<a@example.com>",
            b"a\x00b@example.com",
            b"a\rb@example.com",
            b"x" * 70 + b"@example.com",
            b"a@" + b"d" * 300 + b".test",
            b"\xc3\xa9@example.com",
        ]
    ),
    st.binary(max_size=40).map(_one_line),
)
_mail_params = st.sampled_from(
    b"|SIZE=1000|SIZE=99999999|SIZE=x|BODY=8BITMIME|BODY=7BIT|BODY=9BIT|SMTPUTF8|X=Y|SIZE"
    b"|SIZE=100 BODY=8BITMIME|SIZE=1 SIZE=2".replace(b"|", b"| ").split(b"|")
)
_commands = st.one_of(
    st.builds(lambda h: Command(b"EHLO " + h), _hosts),
    st.builds(lambda h: Command(b"HELO " + h), _hosts),
    st.builds(lambda a, p: Command(b"MAIL FROM:<" + a + b">" + p), _addresses, _mail_params),
    st.builds(lambda a: Command(b"RCPT TO:<" + a + b">"), _addresses),
    st.sampled_from(
        [
            Command(b"EHLO client.test"),
            Command(b"MAIL FROM:<a@example.com>"),
            Command(b"RCPT TO:<b@example.com>"),
            Command(b"RSET"),
            Command(b"NOOP"),
            Command(b"HELP"),
            Command(b"HELP MAIL"),
            Command(b"VRFY a@example.com"),
            Command(b"EXPN staff"),
            Command(b"STARTTLS"),
            Command(b"QUIT"),
            Command(b"EHLO", bad=True),
            Command(b"MAIL FROM:"),
            Command(b"RCPT TO:"),
            Command(b"RSET x"),
            Command(b"NOOP x"),
            Command(b"mail from:<a@example.com>"),
            Command(b"MAIL FROM: <a@example.com>"),
            Command(b"MAIL FROM:a@example.com"),
            Command(b"AUTH"),
            Command(b"DATA x"),
            Command(b"DATA"),
            Command(b"EHLO client.test", ending=b"\n"),  # bare LF
            Command(b"RCPT TO:<b@example.com>", ending=b"\n"),
        ]
    ),
)
_bad_commands = st.one_of(
    st.binary(min_size=1, max_size=30)
    .map(_one_line)
    .filter(lambda b: verb(b) not in KNOWN_VERBS)
    .map(lambda b: Command(b, bad=True)),
    st.builds(
        lambda unit, n: Command(unit * n, bad=True),
        st.sampled_from([b"x", b"NOOP ", b"MAIL FROM:<a", b"\x00", b"\xff"]),
        st.integers(600, 5000),
    ),
    st.sampled_from(
        [
            Command(b"", bad=True),
            Command(b" ", bad=True),
            Command(b"\x00\x00\x00", bad=True),
            Command(b"MAIL\x00FROM:<a@example.com>", bad=True),
            Command(b"\xff\xfe", bad=True),
            Command(b"R\xc3\xa9SET", bad=True),
            Command(b"BDAT 10 LAST", bad=True),
            Command(b"MAIL FROM:<a@example.com> SIZE=99999999999999", bad=True),
        ]
    ),
)
_auths = st.builds(
    lambda line, answers: Auth(line, tuple(answers)),
    st.sampled_from(
        [
            b"AUTH PLAIN",
            b"AUTH LOGIN",
            b"AUTH PLAIN " + _b64(b"\x00u\x00p"),
            b"AUTH PLAIN " + _b64(b"\x00u\x00wrong"),
            b"AUTH PLAIN " + _b64(b"no separators"),
            b"AUTH PLAIN !!",
            b"AUTH LOGIN " + _b64(b"u"),
            b"AUTH CRAM-MD5",
            b"AUTH PLAIN =",
            b"auth plain",
        ]
    ),
    st.lists(
        st.one_of(
            st.sampled_from([_b64(b"\x00u\x00p"), _b64(b"u"), _b64(b"p"), b"*", b"", b"%%%"]),
            st.binary(max_size=40).map(_one_line),
            st.builds(lambda n: b"A" * n, st.integers(900, 5000)),
        ),
        max_size=3,
    ),
)
_body_lines = st.one_of(
    st.binary(max_size=80),  # bare CR and LF included
    st.sampled_from(
        [b".", b"..", b".\r", b"\n.\n", b".x", b"", b"\x00", b"X-Maildrill-Id: fuzz", b"\xff"]
    ),
    st.builds(
        lambda unit, n: unit * n,
        st.sampled_from([b"y", b"ab.", b".", b"\r", b"\r\n."]),
        st.integers(0, 40_000),
    ),
)
_data = st.builds(
    lambda lines, cuts: Data(b"".join(x + b"\r\n" for x in lines), tuple(cuts)),
    st.lists(_body_lines, max_size=12),
    st.lists(st.integers(0, 100_000), max_size=3),
)
_garbage = st.builds(Garbage, st.binary(max_size=2000))

steps = st.one_of(_commands, _commands, _bad_commands, _auths, _data, _garbage)
# A whole transaction (random body), so that scripts reach DATA often.
_transactions = st.builds(
    lambda mail, rcpts, data: [mail, *rcpts, data],
    st.builds(
        lambda a, p: Command(b"MAIL FROM:<" + a + b">" + p),
        st.sampled_from([b"a@example.com", b"first.last+tag@x.test", b"", b"\xc3\xa9@x.test"]),
        st.sampled_from([b"", b" BODY=8BITMIME", b" SIZE=1000", b" SMTPUTF8"]),
    ),
    st.lists(
        st.sampled_from([b"b@example.com", b"c@x.test", b"postmaster"]).map(
            lambda a: Command(b"RCPT TO:<" + a + b">")
        ),
        min_size=1,
        max_size=3,
    ),
    _data,
)
# Enough protocol errors in a row to reach max_errors (20): 421 4.7.0, then the close.
_error_runs = st.integers(15, 25).map(lambda n: [Command(b"EHLO", bad=True)] * n)
_chunks = st.one_of(steps.map(lambda step: [step]), _transactions, _error_runs)
scripts = st.builds(
    lambda greet, chunks: (
        ([Command(b"EHLO fuzz.test")] if greet else [])
        + [step for chunk in chunks for step in chunk]
    ),
    st.booleans(),
    st.lists(_chunks, max_size=12),
)


# -- a sink in its own process, as a drill runs it ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SinkProcess:
    """`python -m sinks` with one sink, started from a config dict; stop() by its PID."""

    config: dict[str, Any]
    workdir: Path
    loop: str = "uvloop"
    proc: subprocess.Popen[str] = field(init=False, repr=False)
    port: int = field(init=False)
    control: str = field(init=False)
    token: str = field(init=False)

    def __post_init__(self) -> None:
        path = self.workdir / "sinks.yaml"
        path.write_text(json.dumps({"sinks": [self.config]}))  # JSON is YAML
        self.stderr = self.workdir / "stderr.txt"
        with self.stderr.open("w") as err:
            out = str(self.journal_dir)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sinks", str(path), "--out", out, "--loop", self.loop],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the sink did not start: {self.stderr.read_text()[-2000:]}")
        (ready,) = json.loads(line)["sinks"]
        self.port = ready["port"]
        self.control = f"http://127.0.0.1:{ready['control_port']}"
        self.token = ready["control_token"]

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def journal_dir(self) -> Path:
        return self.workdir / "journals"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.control}/status")
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def rows(self, journal: str) -> int:
        """Rows in a journal (no field the sink writes holds a line feed)."""
        path = self.journal_dir / f"{journal}-{self.name}.csv"
        return path.read_bytes().count(b"\n") - 1 if path.exists() else 0

    def memory_kb(self, key: str = "VmHWM") -> int:
        """From /proc/PID/status: VmHWM (peak resident set) or VmRSS, in kB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def stop(self) -> int:
        """SIGTERM, as `maildrill run` stops sinks; SIGKILL if it lingers; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
