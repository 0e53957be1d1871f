"""The run's journals as records: one frozen dataclass per CSV journal.

Each record's fields, in order, are its journal's columns: `header()` is the header line,
`row()` the values a writer hands to `maildrill.journal.RowWriter`, and `columns()` tells
the analysis (loadtest/analysis/journals.py) which columns it reads as numbers and which a
journal must have. Like vegeta's `Result`, a record is the one contract between what
writes a journal and what reads it; nothing else lists columns or builds rows by position.

Each field says in its metadata how its column is written and read (`Kind`):

- TEXT: written as is, read as text (names, ids, reply text; a worker number too).
- NUMBER: written as is (None: an empty cell), read as a float (empty: NaN).
- FLAG: a bool written 1 or 0, read as a float.
- EPOCH: epoch seconds written with microseconds (`f"{t:.6f}"`, the journals' one time
  format; None: an empty cell), read as a float.

and whether the analysis needs the column (`required`): a journal whose header lacks one
is not that kind of journal (RunDirError), and a required number that is not one makes its
line unreadable (counted, never silently taken as zero).

The files are a contract with every run directory already on disk: columns keep their
names, order and formatting; a new column goes at the end with a default (an older journal
without it is still read, as without any column not required). What each column means:
docs/run-directory.md, whose column lists tests/unit/test_docs.py holds to these records.
"""

from __future__ import annotations

import enum
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self


class Kind(enum.Enum):
    """How a column is written and read (see the module's docstring)."""

    TEXT = "text"
    NUMBER = "number"
    FLAG = "flag"
    EPOCH = "epoch"


def text(*, required: bool = False) -> Mapping[str, Any]:
    return {"kind": Kind.TEXT, "required": required}


def number(*, required: bool = False) -> Mapping[str, Any]:
    return {"kind": Kind.NUMBER, "required": required}


def flag(*, required: bool = False) -> Mapping[str, Any]:
    return {"kind": Kind.FLAG, "required": required}


def epoch(*, required: bool = False) -> Mapping[str, Any]:
    return {"kind": Kind.EPOCH, "required": required}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    required: bool

    @property
    def numeric(self) -> bool:
        return self.kind is not Kind.TEXT


def _epoch(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


# Only these kinds change a value on its way to the file; TEXT and NUMBER go as they are.
_ENCODERS: dict[Kind, Callable[[Any], Any]] = {Kind.FLAG: int, Kind.EPOCH: _epoch}


class Record:
    """What every journal record shares: its columns, header, row, and a row read back.

    Subclasses are `@dataclass(frozen=True, slots=True)`, every field with its column's
    metadata (`text()`, `number()`, `flag()` or `epoch()`)."""

    __slots__ = ()

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        return _layout(cls).columns

    @classmethod
    def header(cls) -> tuple[str, ...]:
        return _layout(cls).header

    def row(self) -> tuple[Any, ...]:
        """The values in column order, as a journal writes them (plain values only, so an
        attempt's row can travel from a Locust worker to the master as it is).

        Per message on the sinks' and the senders' hot paths: all fields in one
        attrgetter call, then only the FLAG and EPOCH cells re-encoded (an attempt's 24
        columns in about 2.5 µs; `dataclasses.astuple`, which deep-copies, takes 20)."""
        layout = _layout(type(self))
        values = list(layout.get(self))
        for i, encode in layout.encoders:
            values[i] = encode(values[i])
        return tuple(values)

    @classmethod
    def parse(cls, cells: Mapping[str, str]) -> Self:
        """A record from one journal line's cells by column name (as `uncell` reads them).

        A column the line lacks takes its field's default (an older journal); ValueError
        when a column without a default is missing or a cell is not of its field's type."""
        layout = _layout(cls)
        values: dict[str, Any] = {}
        for name, decode, default in layout.decoders:
            cell = cells.get(name)
            if cell is None:
                if default is MISSING:
                    raise ValueError(f"no {name!r} column")
                values[name] = default
            else:
                values[name] = decode(cell)
        return cls(**values)


@dataclass(frozen=True)
class _Layout:
    columns: tuple[Column, ...]
    header: tuple[str, ...]
    get: Callable[[Any], tuple[Any, ...]]
    encoders: tuple[tuple[int, Callable[[Any], Any]], ...]
    decoders: tuple[tuple[str, Callable[[str], Any], Any], ...]


_LAYOUTS: dict[type[Record], _Layout] = {}


def _layout(cls: type[Record]) -> _Layout:
    """A record type's columns and codecs, worked out once from its fields."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _work_out(cls)
    return layout


def _work_out(cls: type[Record]) -> _Layout:
    columns = []
    hints = typing.get_type_hints(cls)
    decoders = []
    for f in fields(cls):  # type: ignore[arg-type]
        kind = f.metadata.get("kind")
        if not isinstance(kind, Kind):
            raise TypeError(f"{cls.__name__}.{f.name}: no column kind (text(), number(), …)")
        columns.append(Column(f.name, kind, bool(f.metadata.get("required"))))
        decoders.append((f.name, _decoder(hints[f.name]), f.default))
    header = tuple(c.name for c in columns)
    return _Layout(
        columns=tuple(columns),
        header=header,
        get=operator.attrgetter(*header),
        encoders=tuple(
            (i, _ENCODERS[c.kind]) for i, c in enumerate(columns) if c.kind in _ENCODERS
        ),
        decoders=tuple(decoders),
    )


def _flag(cell: str) -> bool:
    return float(cell) != 0


_DECODERS: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float, bool: _flag}


def _decoder(hint: Any) -> Callable[[str], Any]:
    """A cell back to its field's type: str, int, float or bool, or one of them or None
    (an empty cell)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in options
    (base,) = (o for o in options if o is not type(None))
    convert = _DECODERS[base]
    if not optional:
        return convert
    return lambda cell: None if cell == "" else convert(cell)


@dataclass(frozen=True, slots=True)
class AttemptRecord(Record):
    """attempts.csv: one SMTP attempt, written by the senders (loadtest.client.Attempt is
    the sender's draft, filled stage by stage; `Attempt.as_record` makes this of it)."""

    run_id: str = field(metadata=text())
    worker: str = field(metadata=text())  # "local", or the Locust worker's id
    msg_id: str = field(metadata=text(required=True))
    stream: str = field(metadata=text())
    attempt: int = field(metadata=number(required=True))  # 1, 2, ... for one message
    server: str = field(metadata=text(required=True))
    intended: float = field(metadata=epoch(required=True))  # when the schedule meant it
    due: float = field(metadata=epoch())  # when this attempt was due (a retry: later)
    start: float = field(metadata=epoch(required=True))
    connected: float | None = field(metadata=epoch())  # session ready; None: never was
    end: float = field(metadata=epoch(required=True))
    phase: str = field(metadata=text())  # loadtest.outcomes.Phase: how far it got
    code: int | None = field(metadata=number())  # the last reply code; None: no reply
    enhanced: str = field(metadata=text())
    outcome: str = field(metadata=text(required=True))  # loadtest.outcomes.Outcome
    bytes: int = field(metadata=number())
    recipients: int = field(metadata=number())
    recipients_refused: int = field(metadata=number())
    new_connection: bool = field(metadata=flag())
    retry: bool = field(metadata=flag())  # attempt > 1
    failover: bool = field(metadata=flag())  # not the stream's preferred server
    final: bool = field(metadata=flag())  # no attempt of this message follows
    maybe_duplicate: bool = field(metadata=flag())  # cut after the dot: may have arrived
    error: str = field(metadata=text())  # the exception's type name
    # One entry per recipient of the message, in its order, ";" between: the reply to its
    # RCPT ("250", "550 5.1.1"), "" when none came, "s" not sent (suppressed: it
    # hard-bounced earlier in the run), "f" not sent (a 5xx ended it in an earlier attempt).
    rcpt_replies: str = field(default="", metadata=text())
    # A server named by DNS (loadtest.dns_route): the address the attempt used (or was
    # refused), the name looked up, the answer's TTL and when it was received (epoch).
    # Empty for a server at a fixed address, and in journals written before them.
    addr: str = field(default="", metadata=text())
    dns_name: str = field(default="", metadata=text())
    dns_ttl: int | None = field(default=None, metadata=number())
    dns_at: float | None = field(default=None, metadata=epoch())


@dataclass(frozen=True, slots=True)
class ReceiptRecord(Record):
    """receipts-SINK.csv: a message a sink took, written before its reply goes out."""

    time: float = field(metadata=epoch(required=True))
    sink: str = field(metadata=text(required=True))
    worker: int = field(metadata=text())  # the sink's worker process (0: the first)
    session: str = field(metadata=text(required=True))
    peer: str = field(metadata=text())
    msg_id: str = field(metadata=text(required=True))  # X-Maildrill-Id
    message_id: str = field(metadata=text())
    mail_from: str = field(metadata=text())
    rcpt_count: int = field(metadata=number())
    size: int = field(metadata=number(required=True))
    outcome: str = field(metadata=text())  # accepted, queued (a backup MX) or dropped
    queue_id: str = field(metadata=text())
    helo: str = field(metadata=text())  # the EHLO name of who delivered it: which relay
    # The envelope's recipients (RCPT TO addresses the sink took), one space between: which
    # recipients this copy reached (the analysis counts per recipient). "": not recorded.
    rcpts: str = field(default="", metadata=text())
    # What the sink's checks said of the message (sinks.authcheck; "": not checked): each
    # of spf, dkim, dmarc and ptr is pass, fail, none, neutral, softfail, temperror or
    # permerror (RFC 8601's names); dkim_domain the d= that decided dkim; dmarc_policy the
    # From domain's p= (none, quarantine, reject); auth_detail why, for checks not passing.
    spf: str = field(default="", metadata=text())
    dkim: str = field(default="", metadata=text())
    dkim_domain: str = field(default="", metadata=text())
    dmarc: str = field(default="", metadata=text())
    dmarc_policy: str = field(default="", metadata=text())
    ptr: str = field(default="", metadata=text())
    auth_detail: str = field(default="", metadata=text())


@dataclass(frozen=True, slots=True)
class RefusalRecord(Record):
    """refusals-SINK.csv: every 4xx or 5xx reply a sink sent."""

    time: float = field(metadata=epoch(required=True))
    sink: str = field(metadata=text(required=True))
    worker: int = field(metadata=text())
    session: str = field(metadata=text())
    peer: str = field(metadata=text())
    stage: str = field(metadata=text(required=True))
    code: str = field(metadata=number(required=True))  # the reply's first word, as sent
    enhanced: str = field(metadata=text())
    mail_from: str = field(metadata=text())
    rcpt_count: int = field(metadata=number())
    msg_id: str = field(metadata=text())
    helo: str = field(default="", metadata=text())  # the session's EHLO name ("": none yet)
    # A refusal for authentication (a sink's `enforce:`) journals the verdicts that decided
    # it, as a receipt does (ReceiptRecord's columns of the same names); "" for any other.
    spf: str = field(default="", metadata=text())
    dkim: str = field(default="", metadata=text())
    dkim_domain: str = field(default="", metadata=text())
    dmarc: str = field(default="", metadata=text())
    dmarc_policy: str = field(default="", metadata=text())
    ptr: str = field(default="", metadata=text())
    auth_detail: str = field(default="", metadata=text())


@dataclass(frozen=True, slots=True)
class FaultRecord(Record):
    """faults-TARGET.csv: a fault starting or stopping on a sink, proxy or MTA."""

    time: float = field(metadata=epoch(required=True))
    sink: str = field(metadata=text(required=True))
    worker: int = field(metadata=text())
    kind: str = field(metadata=text(required=True))
    state: str = field(metadata=text(required=True))  # start or stop
    fault_id: str = field(metadata=text())
    origin: str = field(metadata=text())  # schedule, command, ...
    params: str = field(metadata=text())  # JSON


@dataclass(frozen=True, slots=True)
class RelayRecord(Record):
    """relay-SINK.csv: a backup MX's queue, step by step (sinks.backup_mx)."""

    time: float = field(metadata=epoch(required=True))
    sink: str = field(metadata=text(required=True))
    worker: int = field(metadata=text())
    msg_id: str = field(metadata=text(required=True))
    queue_id: str = field(metadata=text())
    event: str = field(metadata=text(required=True))
    upstream: str = field(metadata=text())  # host:port
    attempt: int = field(metadata=number())
    code: int | None = field(metadata=number())  # the upstream's reply; None: none came
    enhanced: str = field(metadata=text())
    error: str = field(metadata=text())
    queued_at: float = field(metadata=epoch())


@dataclass(frozen=True, slots=True)
class ProxyRecord(Record):
    """proxy-NAME.csv: a fault proxy's connections and the messages it saw go by
    (sinks.proxy): event open; message (msg_id, code = the server's reply to the final
    dot, size, cause = the fault that cut it); close (bytes each way, cause = what ended
    it: client, server or a fault)."""

    time: float = field(metadata=epoch(required=True))
    proxy: str = field(metadata=text(required=True))
    session: str = field(metadata=text(required=True))
    peer: str = field(metadata=text())
    event: str = field(metadata=text(required=True))
    msg_id: str = field(default="", metadata=text())
    code: int | None = field(default=None, metadata=number())
    size: int | None = field(default=None, metadata=number())
    bytes_up: int | None = field(default=None, metadata=number())
    bytes_down: int | None = field(default=None, metadata=number())
    cause: str = field(default="", metadata=text())
    detail: str = field(default="", metadata=text())


@dataclass(frozen=True, slots=True)
class ProbeRecord(Record):
    """probes.csv: one health probe (connect, EHLO, QUIT) by `maildrill probe`."""

    time: float = field(metadata=epoch(required=True))  # when it started
    server: str = field(metadata=text(required=True))
    ok: bool = field(metadata=flag(required=True))  # banner 220 and EHLO 250
    phase: str = field(metadata=text())
    code: int = field(metadata=number())  # the last reply code (0: none)
    outcome: str = field(metadata=text())  # ok, or a loadtest.outcomes.Outcome value
    latency_ms: float = field(metadata=number(required=True))
    error: str = field(metadata=text())


@dataclass(frozen=True, slots=True)
class MtaQueueRecord(Record):
    """mta-queue-MTA.csv: a message still in a Postfix instance's queue at the end."""

    time: float = field(metadata=epoch(required=True))
    mta: str = field(metadata=text(required=True))
    msg_id: str = field(metadata=text(required=True))
    queue: str = field(metadata=text(required=True))  # active, deferred, hold, ...
    # The recipients the queue file still has to deliver, one space between (those already
    # delivered are not listed). "": not recorded (an older journal).
    rcpts: str = field(default="", metadata=text())


@dataclass(frozen=True, slots=True)
class DnsQueryRecord(Record):
    """dns-queries.csv: one question the run's DNS server answered, or chose not to
    (maildrill.dns): what a sender's resolver was told, and when, so an analysis can tell
    when each answer changed and how long a TTL let a sender keep the old one."""

    time: float = field(metadata=epoch(required=True))  # when the query came
    name: str = field(metadata=text(required=True))  # asked, lower case, no final dot
    type: str = field(metadata=text(required=True))  # A, MX, ...
    rcode: str = field(metadata=text(required=True))  # NOERROR, NXDOMAIN, ...; none: no answer
    answers: str = field(metadata=text())  # the asked type's records, `;` between
    ttl: int | None = field(metadata=number())  # theirs, or the negative answer's; None: none
    fault_id: str = field(metadata=text())  # the DNS faults that acted, space between
    transport: str = field(metadata=text())  # udp or tcp
    delay_ms: float = field(default=0.0, metadata=number())  # held back this long (latency)
    peer: str = field(default="", metadata=text())  # the asker's address (an MTA's own)


# Each kind of journal the analysis reads (the keys of loadtest.analysis.rundir's patterns).
RECORDS: dict[str, type[Record]] = {
    "attempts": AttemptRecord,
    "receipts": ReceiptRecord,
    "refusals": RefusalRecord,
    "faults": FaultRecord,
    "relay": RelayRecord,
    "mta_queue": MtaQueueRecord,
    "proxy": ProxyRecord,
    "probes": ProbeRecord,
}
