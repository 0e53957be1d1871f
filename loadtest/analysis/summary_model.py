"""summary.json as a typed model: the numbers tools, CI, the CLI, the reports and `compare` read.

`Summary` is the one definition of summary.json. `loadtest.analysis.summary.summarise` fills
it from a loaded run directory; `model_dump(mode="json")` is the file, key for key and in
order; `Summary.model_validate` reads one back, from this version or an older one. The
schema in docs/summary.schema.json and the table in docs/summary.md are generated from
these classes (`python -m loadtest.analysis.summary_doc`), so they cannot drift from it.

Three rules keep old files loading and new files exact:

- A key the first summary.json already had (the founding design's contract: counts,
  throughput, latency, errors, failovers, SLOs) is required; every key added since has a
  default, so an older file loads and what it lacks reads as not measured.
- A part is written as it was given: a key left at its default (an older file's missing
  key, an SLO check without a note) stays out of the output rather than appearing as
  null. `summarise` gives every key (a test checks that).
- Unknown keys are kept (`extra="allow"`): a newer file read by this version loses nothing,
  and the report lists them under "More results".

A number `maildrill compare` shows carries its sense in its type, `Annotated[int, LOWER]`
(see `Compare`): adding a metric is adding its field here and computing it in the summariser
that builds its part; compare, the JSON Schema and docs/summary.md follow from the field.

`SLO_METRICS` names what an SLO rule may measure and where each value is in the model;
`loadtest.analysis.slo` parses rules against it (for the scenario's checks too) and reads
the values through it. This module imports only pydantic: the scenario can use it without
pandas.

Adding a metric (the model, the module that computes its part, one view; the steps):
docs/architecture.md, "How to add a summary metric".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# A number as the analysis computed it: an int stays an int in the file (10, not 10.0).
Number = int | float


@dataclass(frozen=True)
class Compare:
    """How `maildrill compare` shows a number: which way is better. Annotate the field,
    `lost: Annotated[int, LOWER]`; a number without one is not compared.

    `better` is "higher", "lower" or "neutral" (shown, but a change is neither better nor
    worse). On a part, a map of parts or a list of them (`Annotated[Percentiles, LOWER]`)
    it is the sense of every number inside that has none of its own, or of those named in
    `only`. `label` names the row instead of the key; with `if_measured` the row is left
    out when neither run has a value. The JSON Schema carries the sense as "better".
    """

    better: Literal["higher", "lower", "neutral"]
    label: str | None = None
    only: tuple[str, ...] | None = None
    if_measured: bool = False

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["better"] = self.better
        return schema


HIGHER = Compare("higher")
LOWER = Compare("lower")
NEUTRAL = Compare("neutral")


class Part(BaseModel):
    """A part of summary.json: extra keys kept, written as given (see the module docstring)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in data.items() if key in given}


# -- shared shapes ---------------------------------------------------------------------------


class Percentiles(Part):
    """HDR-histogram percentiles in milliseconds, merged over the workers; null: no values."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class ExactPercentiles(Part):
    """Exact p50, p95 and max in milliseconds (series that need no merging); null: none."""

    p50: float | None = None
    p95: float | None = None
    max: float | None = None


# -- messages, throughput, latency -----------------------------------------------------------


class Messages(Part):
    """One count per message (not per attempt), from the attempts joined with every place a
    message can be found (receipts, relay queues, proxies, MTA queues)."""

    planned: Annotated[int, NEUTRAL] = Field(description="messages the schedule plans")
    attempted: Annotated[int, NEUTRAL] = Field(description="messages with at least one attempt")
    accepted: Annotated[int, HIGHER] = Field(
        description="the client's final word was a 2xx after DATA"
    )
    failed: Annotated[int, LOWER] = Field(
        description="attempted; final word not a 2xx (rejected, gave up)"
    )
    received_unique: Annotated[int, HIGHER] = Field(
        description="messages some sink has (once or more)"
    )
    lost: Annotated[int, LOWER] = Field(
        description="accepted by the client's account, received by no sink, not held, not "
        "refused downstream, not unverified: mail that vanished"
    )
    duplicates: Annotated[int, LOWER] = Field(
        description="received more often than they had recipients"
    )
    phantom: Annotated[int, LOWER] = Field(
        description="received, but counted failed by the client (RFC 1047)"
    )
    stranded: Annotated[int, LOWER] = Field(
        description="accepted by a backup MX or an MTA under test, still queued at the end"
    )
    not_sent: Annotated[int, LOWER] = Field(
        default=0, description="planned, never attempted by the end"
    )
    in_flight: Annotated[int, LOWER] = Field(
        default=0, description="attempted, no final word when the run ended"
    )
    unverified: Annotated[int, LOWER] = Field(
        default=0,
        description="accepted by a server maildrill cannot see past (no sink downstream, no "
        "proxy in front) and received by no sink: neither delivered nor lost",
    )
    retried: Annotated[int, LOWER] = Field(
        default=0,
        description="accepted, but only after more than one attempt (a deferral, a refused "
        "or dropped attempt, a failover): mail that reached its server late",
    )
    suppressed: Annotated[int, NEUTRAL] = Field(
        default=0,
        description="planned, never sent: every recipient had hard-bounced earlier in the "
        "run (suppressed); neither not_sent nor failed",
    )
    refused_downstream: Annotated[int, LOWER] = Field(
        default=0,
        description="accepted, received by no sink, not held, and refused for good further "
        "on (a sink's 5xx naming its msg_id, or a backup MX's upstream bounce): bounced back "
        "to the sender, neither lost nor unverified",
    )


class Recipients(Part):
    """One count per recipient of a message, beside the per-message counts: a message
    split by destination (an MTA delivers one copy per recipient domain) can be delivered
    for one recipient and stranded or lost for another, or one part delivered twice while
    another is missing, which the message's counts do not show. A recipient refused at RCPT
    (4xx or 5xx) is in neither `accepted` nor `lost`. Null: a summary from before these."""

    addressed: Annotated[int | None, NEUTRAL] = Field(
        default=None, description="recipients the client named in RCPT TO (attempted messages)"
    )
    accepted: Annotated[int | None, HIGHER] = Field(
        default=None,
        description="RCPT 250 in the attempt whose final dot got the message's 250",
    )
    delivered: Annotated[int | None, HIGHER] = Field(
        default=None, description="accepted recipients named in a delivery receipt"
    )
    lost: Annotated[int | None, LOWER] = Field(
        default=None, description="accepted, delivered nowhere, held nowhere, not unverified"
    )
    duplicated: Annotated[int | None, LOWER] = Field(
        default=None, description="recipients named in more than one delivery receipt"
    )
    stranded: Annotated[int | None, LOWER] = Field(
        default=None, description="accepted, not delivered, still in a queue at the end"
    )
    unverified: Annotated[int | None, LOWER] = Field(
        default=None,
        description="accepted by a server maildrill cannot see past, not delivered to a sink",
    )
    refused_downstream: Annotated[int | None, LOWER] = Field(
        default=None,
        description="accepted, not delivered, not held, refused for good further on (a 5xx "
        "or a backup MX's upstream bounce): neither lost nor unverified",
    )


class ServerThroughput(Part):
    accepted: int = Field(description="accepted attempts at this server")
    # A server's share moving (more to the backup, say) is a change, not an improvement.
    mean_msgs_per_s: Annotated[float, NEUTRAL] = Field(
        description="accepted / the run's active span"
    )


class Throughput(Part):
    """Accepted messages per second by end time."""

    mean_msgs_per_s: Annotated[float, HIGHER] = Field(
        description="accepted / active span (first start to last accepted end, at least 1 s)"
    )
    # A higher peak can be a backlog flushed after a stall: a change, not an improvement.
    peak_msgs_per_s: Annotated[float, NEUTRAL] = Field(description="the busiest 1 s bin")
    per_server: dict[str, ServerThroughput] = Field(default_factory=dict)
    min_rolling_msgs_per_s: Annotated[float | None, Compare("higher", if_measured=True)] = Field(
        default=None,
        description="the fewest accepted messages in any 5 s window inside a "
        "constant-rate stage, per second; null: no such stage of 5 s or more",
    )
    min_rolling_at_s: float | None = Field(
        default=None, description="the start of that window, seconds from run start"
    )


class Latency(Percentiles):
    """Service time (end - start) of accepted attempts, ms."""

    per_server: Annotated[dict[str, Percentiles], Compare("lower", only=("p50", "p95", "p99"))] = (
        Field(default_factory=dict)
    )


# -- faults ----------------------------------------------------------------------------------


class FaultPhase(Part):
    """Accepted attempts that ended before the onset, during the fault, or after the clear."""

    accepted: int
    latency_ms: Percentiles = Field(default_factory=Percentiles)
    response_time_ms: Percentiles = Field(default_factory=Percentiles)


class Failover(Part):
    """One fault window (faults journal, or inferred for a server that is not a sink). Times
    from run start (onset, cleared) or from the onset or clear (the others), seconds."""

    target: str
    kind: str = Field(description='the fault kind; "inferred" for a server that is not a sink')
    onset_s: float
    cleared_s: float | None = Field(description="null: still on when the run ended")
    detection_s: Annotated[float | None, LOWER] = Field(
        description="onset to the end of the first failed attempt at the target"
    )
    failover_s: Annotated[float | None, LOWER] = Field(
        description="onset to the end of the first attempt accepted by another server"
    )
    failback_s: Annotated[float | None, LOWER] = Field(
        description="clear to the end of the first attempt accepted again by the target"
    )
    recovery_s: Annotated[float | None, LOWER] = Field(
        description="onset to the first second whose accepted rate is back at 90% of the "
        "rate in the 10 s before the fault"
    )
    longest_gap_s: Annotated[float | None, LOWER] = Field(
        default=None, description="longest stretch of the fault with no accepted message"
    )
    messages_delayed: Annotated[int, LOWER] = Field(
        description="messages with a failed attempt at the target during the fault, "
        "accepted in the end"
    )
    messages_failed: Annotated[int, LOWER] = Field(description="the same, never accepted")
    added_latency_ms: ExactPercentiles = Field(
        default_factory=ExactPercentiles,
        description="the delayed messages' delay beyond the median before the fault",
    )
    phases: dict[str, FaultPhase] = Field(
        default_factory=dict, description="before, during and after"
    )
    onset_source: str = Field(
        default="sink journal", description='"sink journal" or "first failed attempt"'
    )
    monitor_detection_s: float | None = Field(
        default=None, description="onset to the end of the first failed health probe"
    )
    monitor_recovery_s: float | None = Field(
        default=None, description="clear to the end of the first passing health probe"
    )
    measured_from: str = Field(
        default="attempts",
        description='"attempts" (the sender\'s journal), or "receipts" (no sender\'s journal: '
        "failover is the first receipt at another server, failback the first receipt at the "
        "target after the clear, gaps and recovery are counted in receipts)",
    )
    longest_gap_by_server_s: dict[str, float | None] = Field(
        default_factory=dict,
        description="per server, the longest stretch of the fault with nothing accepted there",
    )


# -- DNS changes and faults (the run's DNS server) -------------------------------------------


class DnsChange(Part):
    """One moment a `records` fault changed the addresses of names the senders look up: its
    start (`change`) or its end (`switch_back`), and how the senders followed it (attempts
    journal: `addr`, `dns_name`, `worker`). Times in seconds from the change; a sender is a
    Locust process (the attempts journal's `worker`), each with its own DNS cache."""

    fault_id: str
    edge: Literal["change", "switch_back"] = Field(
        description='"change": the fault\'s start; "switch_back": its end, the zone\'s '
        "records served again"
    )
    at_s: float = Field(description="the change, seconds from t0 (the DNS server's journal)")
    names: list[str] = Field(description="the names whose A/AAAA records changed")
    addresses: list[str] = Field(
        description="the addresses to follow to: the fault's records (change); for a "
        "switch back, any address of those names but the fault's"
    )
    senders: int = Field(description="senders that sent to those names after the change")
    first_follow_s: Annotated[float | None, LOWER] = Field(
        description="to the start of the first attempt at a new address; null: none"
    )
    last_follow_s: Annotated[float | None, LOWER] = Field(
        description="to the moment the last sender followed: per sender, the start of its "
        "first attempt at a new address after its last one at an old address; the latest "
        "of those; null: a sender never followed before the next change or the run's end"
    )
    last_stale_s: Annotated[float | None, LOWER] = Field(
        description="to the start of the last attempt still at an old address; null: none"
    )
    stale_attempts: Annotated[int, LOWER] = Field(
        description="attempts at an old address after the change (until the next change)"
    )
    not_followed: Annotated[int, LOWER] = Field(
        description="senders that sent after the change and never at a new address"
    )


class DnsFaultWindow(Part):
    """A fault of the run's DNS server (faults-dns.csv) and the mail it deferred."""

    fault_id: str
    kind: str
    onset_s: float
    cleared_s: float | None = Field(description="null: still on when the run ended")
    deferred_messages: Annotated[int, LOWER] = Field(
        description="messages with an attempt deferred at phase dns that started in the window"
    )
    deferred_attempts: Annotated[int, LOWER] = Field(
        description="attempts deferred at phase dns that started in the window"
    )


class Dns(Part):
    """Servers named by DNS and the run's DNS server: how the senders followed each change
    of a record, and what DNS failures deferred (docs/metrics.md, "DNS")."""

    changes: list[DnsChange] = Field(
        default_factory=list, description="each records fault's start and end, in order"
    )
    faults: list[DnsFaultWindow] = Field(
        default_factory=list, description="each fault of the DNS server, in order of onset"
    )
    follow_s: Annotated[float | None, LOWER] = Field(
        default=None,
        description="the worst last_follow_s over the changes; null: no change, or one not "
        "followed by every sender",
    )
    stale_attempts: Annotated[int, LOWER] = Field(
        default=0, description="attempts at an old address after a change, over all changes"
    )
    deferred: Annotated[int, LOWER] = Field(
        default=0, description="messages with an attempt deferred at phase dns (whole run)"
    )


# -- backup MXs, proxies, MTAs under test ----------------------------------------------------


class BackupMx(Part):
    """A sink in backup-mx mode: what it queued and forwarded, and when."""

    upstream: str | None = Field(description="the server it forwards to")
    queued: int
    forward_attempts_deferred: int = Field(description="forwarding tries the upstream deferred")
    forwarded: int
    bounced: int = Field(description="refused for good by the upstream: refused_downstream")
    left_in_queue: int
    max_depth: int
    drain_s: float | None = Field(description="from the upstream's recovery to an empty queue")
    end_to_end_ms: Percentiles = Field(
        description="client's 250 to the first receipt at the final sink"
    )
    depth_series: list[tuple[float, int]] = Field(
        description="[seconds from run start, depth] after each move, at most ~500"
    )


class FaultProxy(Part):
    """A sink in proxy mode: sessions through it and what the server behind answered."""

    upstream: str | None = Field(description="the server behind it")
    sessions: int
    sessions_ended_by: dict[str, int]
    messages: int
    server_replies: dict[str, int] = Field(description="the server's reply to the dot, by class")
    cut_by_fault: dict[str, int]
    accepted_then_cut: int = Field(
        description="the server said 250, the proxy cut the client before it heard it"
    )
    unanswered_at_session_end: int = Field(
        default=0, description="client or server ended the session before a dot's reply"
    )
    bytes_up: int
    bytes_down: int


class MtaPath(Part):
    """Mail an MTA under test delivered to one downstream sink."""

    messages: int
    receipts: int
    delivery_delay_ms: Percentiles
    relayed_by: dict[str, int] = Field(
        default_factory=dict, description="receipts by EHLO name (absent: no helo column)"
    )


class MtaDelivery(Part):
    """A real MTA under test (Postfix): from the client's 250 to a downstream receipt."""

    accepted: int = Field(description="the MTA's 250 to the client")
    delivered: int = Field(description="a downstream sink has it")
    duplicated: int = Field(description="delivered more often than it had recipients")
    stranded: int = Field(description="still in the MTA's queue at the end")
    undelivered: int
    delivery_delay_ms: Percentiles = Field(description="that 250 to the first receipt")
    drain_s: float | None = Field(
        description="from the MTA's restart to the last delivery of what it held through it"
    )
    paths: dict[str, MtaPath] = Field(default_factory=dict)


# -- health probes ---------------------------------------------------------------------------


class DownWindow(Part):
    """A run of failed probes, seconds from run start."""

    start_s: float = Field(description="the start of the first failed probe")
    noticed_s: float = Field(description="its end")
    end_s: float | None = Field(description="the next passing probe's start; null: still down")
    duration_s: float | None
    probes: int
    outcomes: dict[str, int] = Field(description="failed probes by outcome")


class ProbedServer(Part):
    probes: int
    passed: int
    availability: float = Field(description="share of probes passed")
    first_s: float
    last_s: float
    latency_ms: ExactPercentiles = Field(description="of the probes that passed")
    down_s: float
    down: list[DownWindow]


class Probes(Part):
    """The health prober (connect, EHLO, QUIT per server): what a monitor would have seen."""

    interval_ms: int | None = Field(default=None, description="null: no prober ran")
    timeout_ms: int | None = None
    servers: dict[str, ProbedServer] = Field(default_factory=dict)


# -- the run's own record --------------------------------------------------------------------


class PreflightFlag(Part):
    """A difference that would break mail after a failover (preflight.json has the facts)."""

    code: str = ""
    server: str = ""
    message: str


class Preflight(Part):
    ok: bool | None = None
    reference: str | None = Field(default=None, description="the server the others match")
    flags: list[PreflightFlag] | None = None
    notes: list[Any] | None = None


class UnreadableLines(Part):
    kind: str
    lines: int = Field(description="complete lines that could not be read")
    first: list[int] = Field(description="the first of their line numbers")
    missing: int = 0


class MissingLines(Part):
    kind: str
    lines: int = Field(description="lines cut off since harness.json recorded the journal")


class JournalProblems(Part):
    """What the journals left out. A journal with unreadable or missing lines keeps every SLO
    counted from its kind from passing."""

    skipped_lines: dict[str, int] = Field(description="every line left out, per file")
    unreadable_lines: dict[str, UnreadableLines] = Field(default_factory=dict)
    missing_lines: dict[str, MissingLines] = Field(default_factory=dict)
    torn_last_line: list[str] = Field(default_factory=list)
    torn_last_line_trusted: bool = Field(
        default=True, description="the run could have killed a writer mid-write"
    )


class JournalSize(Part):
    bytes: int
    lines: int


class Harness(Part):
    """harness.json as `maildrill run` wrote it at the end (without `partial`)."""

    interrupted_by: str | None = None
    aborted_by: str | None = Field(
        default=None, description="a fault that did not start: the SLOs are not judged"
    )
    journals: dict[str, JournalSize] = Field(default_factory=dict)
    locust_exit_code: Number | None = None
    sink_deaths: list[dict[str, Any]] = Field(default_factory=list)
    workers_lost: list[dict[str, Any]] = Field(default_factory=list)
    faults: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    finished_at: Number | None = None
    sender: str | None = Field(
        default=None, description='"external": `maildrill sinks`, another sender (no attempts)'
    )
    t0: Number | None = Field(
        default=None, description="`maildrill sinks`: the fault timeline's start, epoch seconds"
    )


# -- bounces ---------------------------------------------------------------------------------


class BounceRates(Part):
    """The recipients of one stream, or carried to one server, and their bounces."""

    attempted: Annotated[int, NEUTRAL] = Field(
        default=0, description="recipients carried by at least one attempt (not suppressed)"
    )
    hard: Annotated[int, LOWER] = Field(default=0, description="last word a 5xx")
    soft: Annotated[int, LOWER] = Field(
        default=0, description="last word a 4xx, and no retry followed"
    )
    rate: Annotated[float | None, LOWER] = Field(
        default=None, description="(hard + soft) / attempted; null: none attempted"
    )


class Bounces(BounceRates):
    """Per recipient (a message and one of its recipients), its last word decided by
    codes: the reply to its RCPT, else its message's. See docs/metrics.md, "Bounces"."""

    hard_rate: Annotated[float | None, LOWER] = Field(
        default=None, description="hard / attempted; null: none attempted"
    )
    by_class: dict[str, int] = Field(
        default_factory=dict,
        description='hard and soft bounces by enhanced code class and subject: "5.1.x" '
        '(addressing), "5.7.x" (policy), "4.7.x"; "5.x.x": no enhanced code',
    )
    by_status: dict[str, int] = Field(
        default_factory=dict, description='the same by reply: "550 5.1.1", "552"'
    )
    suppressed: Annotated[int, NEUTRAL] = Field(
        default=0,
        description="recipients left out of an attempt: their address had hard-bounced "
        "earlier in the run (the sender's suppression list)",
    )
    unknown: int | None = Field(
        default=None,
        description="recipients the campaign plan sent to a mailbox that does not exist "
        "(unknown_recipients); null: no stream has any",
    )
    unknown_bounced: int | None = Field(
        default=None, description="of the hard bounces, those at an unknown recipient"
    )
    repeat_bounces: Annotated[int | None, LOWER] = Field(
        default=None,
        description="hard bounces at an address already suppressed by an earlier one: "
        "messages to it in flight together, or several sending processes",
    )
    per_stream: dict[str, BounceRates] = Field(default_factory=dict)
    per_server: dict[str, BounceRates] = Field(
        default_factory=dict, description="attempted at the server; bounced by it"
    )


# -- capacity and SLOs -----------------------------------------------------------------------


class CapacityStep(Part):
    """One constant-rate stage of a step load (see loadtest/analysis/capacity.py)."""

    stage: int
    start_s: Number
    duration_s: Number
    offered_msgs_per_s: Number
    offered_measured_msgs_per_s: Number
    accepted_msgs_per_s: Number = Field(description="offered in the stage, accepted on time")
    accepted_ratio: Number
    delivered_msgs_per_s: Number = Field(description="accepted attempts ended in the stage")
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    p95_lateness_ms: float | None
    failed_attempts: int = Field(description="attempts not accepted, ended in the stage")
    within_slo: bool = Field(description="p95 latency within the p95_latency_ms SLO, if any")
    stable: bool = Field(description="accepted/offered >= stable_share, and within_slo")


# Only a step load has a knee: two runs without one show no row for it.
STEP_LOAD_HIGHER = Compare("higher", if_measured=True)


class Capacity(Part):
    """Step-load capacity: null values and no steps unless the schedule has more than one
    constant-rate stage."""

    knee_msgs_per_s: Annotated[Number | None, STEP_LOAD_HIGHER] = Field(
        default=None, description="the highest offered rate of a stable step"
    )
    max_stable_msgs_per_s: Annotated[Number | None, STEP_LOAD_HIGHER] = Field(
        default=None, description="the highest delivered rate of a step within the p95 SLO"
    )
    p95_limit_ms: float | None = Field(default=None, description="the p95_latency_ms SLO")
    stable_share: float | None = None
    on_time_s: float | None = Field(
        default=None, description="how late an accepted message may be and still count"
    )
    steps: list[CapacityStep] = Field(default_factory=list)


class Backlog(Part):
    """The sender's backlog over the run: messages due by their planned time (`intended`)
    and not yet accepted by any server. The drill's counterpart of plan.json's `backlog`,
    `peak_backlog` and `completion_s` (docs/metrics.md, "Backlog", says where they differ)."""

    peak: Annotated[int | None, LOWER] = Field(
        default=None, description="the most messages due and not yet accepted at once"
    )
    peak_at_s: float | None = Field(
        default=None, description="when the backlog first reached its peak, seconds from t0"
    )
    completion_s: Annotated[float | None, LOWER] = Field(
        default=None,
        description="the end of the attempt that accepted the last message, seconds from "
        "t0; null: none accepted",
    )
    left_at_end: Annotated[int | None, LOWER] = Field(
        default=None, description="due and never accepted (failed, in flight, cut off)"
    )
    step_s: float | None = Field(default=None, description="the spacing of `series`")
    series: list[tuple[float, int]] = Field(
        default_factory=list,
        description="(seconds from t0, backlog) every step_s from 0 to past completion",
    )


class SloCheck(Part):
    """One rule. A value that could not be measured fails, except a fault timing in a run
    with no fault; a rule counted from a journal with unreadable lines cannot pass."""

    name: str = Field(description="the metric (one of SLO_METRICS)")
    rule: str = Field(description='as the scenario wrote it, e.g. "failover_s <= 5"')
    limit: float
    value: Number | None = Field(description="as measured; null: not measured")
    passed: bool
    note: str = Field(default="", description="why, when not plainly measured (absent: none)")


class SloVerdict(Part):
    """All the scenario's SLO rules; false when any failed, or when a fault did not start."""

    passed: Annotated[bool, Compare("higher", label="passed (1 yes, 0 no)")] = True
    checks: list[SloCheck] = Field(default_factory=list)


# -- receipts alone (no sender's journal) ----------------------------------------------------


class ReceivedServer(Part):
    """One server's receipts (a sink behind a fault proxy counts for the proxy: the server
    the sender addressed)."""

    receipts: int = Field(description="messages it acknowledged (a backup MX's queued too)")
    dropped: int = Field(description="journaled, then cut before the 250 (RFC 1047)")
    first_s: float | None = Field(description="its first receipt, seconds from run start")
    last_s: float | None = Field(description="its last receipt")
    longest_gap_s: float | None = Field(
        description="longest stretch with no receipt here, from the first receipt anywhere "
        "to the last"
    )


class Received(Part):
    """What the sinks and proxies alone show, when the sender keeps no journal (an external
    platform sending to `maildrill sinks`): receipts, gaps, duplicates by message id."""

    receipts: int = Field(description="receipts at every server (dropped included)")
    messages: int = Field(
        description="distinct messages received, by X-Maildrill-Id, or Message-ID without one"
    )
    duplicates: int = Field(description="messages received more than once")
    extra_copies: int = Field(description="receipts beyond the first of each message")
    by_message_id: int = Field(description="messages known by their Message-ID alone")
    unidentified: int = Field(description="receipts with neither header: not counted as messages")
    longest_gap_s: float | None = Field(
        description="longest stretch with no receipt anywhere, first receipt to last"
    )
    servers: dict[str, ReceivedServer] = Field(default_factory=dict)


# -- streams ---------------------------------------------------------------------------------


class StreamResult(Messages):
    """One stream of the campaign (transactional, promotional, ...): the message counts of
    `messages` and the latency, response time, lateness and fault figures of the whole
    run, each computed by the same function over this stream's messages alone (a message
    is in the stream its attempts name). See docs/metrics.md, "Streams"."""

    latency_ms: Annotated[Percentiles, LOWER] = Field(
        default_factory=Percentiles,
        description="service time (end - start) of this stream's accepted attempts",
    )
    response_time_ms: Annotated[Percentiles, LOWER] = Field(
        default_factory=Percentiles,
        description="end of the accepted attempt - the message's intended send time",
    )
    lateness_ms: Annotated[Percentiles, LOWER] = Field(
        default_factory=Percentiles, description="start - intended send time of first attempts"
    )
    failovers: list[Failover] = Field(
        default_factory=list,
        description="each fault window as `failovers` has it, measured on this stream's "
        "attempts (no health-probe timings: probes carry no stream)",
    )


# -- authentication at verifying sinks ------------------------------------------------------


class AuthCounts(Part):
    """The provider checks (SPF, DKIM, DMARC, PTR) of a set of messages at sinks with
    `verify:`: the verdicts each receipt journaled, and the refusals a sink with `enforce:`
    sent instead of a receipt, with the verdicts that decided them. Counted per receipt
    and per refusal (a copy delivered twice is checked twice). See docs/metrics.md,
    "Authentication". `maildrill compare` shows the whole run's (`Auth`), not each sink's,
    path's and phase's: hundreds of rows."""

    checked: int = Field(default=0, description="delivered + refused")
    delivered: int = Field(default=0, description="receipts with verdicts")
    clean: int = Field(default=0, description="delivered with DMARC and PTR passing")
    dmarc_fail: int = Field(
        default=0, description="delivered, though DMARC fails (p=none or quarantine, or not "
        "enforced): would go to spam or be rejected"
    )  # fmt: skip
    unauthenticated: int = Field(
        default=0, description="delivered with neither SPF nor DKIM passing"
    )
    refused: int = Field(
        default=0, description="refused by the sink's enforce: with the provider's reply"
    )
    refused_by: dict[str, int] = Field(
        default_factory=dict, description='those refusals by reply ("550 5.7.26")'
    )
    spf: dict[str, int] = Field(
        default_factory=dict, description="messages with verdicts (delivered and refused) by "
        "SPF verdict"
    )  # fmt: skip
    dkim: dict[str, int] = Field(
        default_factory=dict, description="messages with verdicts by DKIM verdict"
    )
    dmarc: dict[str, int] = Field(
        default_factory=dict, description="messages with verdicts by DMARC verdict"
    )
    ptr: dict[str, int] = Field(
        default_factory=dict, description="messages with verdicts by PTR verdict"
    )
    spf_pass_share: float | None = Field(
        default=None, description="messages passing SPF / with_verdicts; null: none"
    )
    dkim_pass_share: float | None = Field(
        default=None, description="messages passing DKIM / with_verdicts"
    )
    dmarc_pass_share: float | None = Field(
        default=None, description="messages passing DMARC / with_verdicts"
    )
    ptr_pass_share: float | None = Field(
        default=None, description="messages passing PTR / with_verdicts"
    )
    clean_share: float | None = Field(
        default=None, description="clean / checked: refusals count as not clean"
    )
    with_verdicts: int = Field(
        default=0, description="delivered + the refusals that journaled their verdicts (all "
        "but those in journals older than the refusals' verdict columns): what the verdict "
        "counts and pass shares are of"
    )  # fmt: skip
    refused_verdicts: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict, description="per reply of refused_by, the refused mail's "
        'verdicts other than pass, per check: {"550 5.7.26": {"spf": {"fail": 3}}}'
    )  # fmt: skip


class AuthPhases(Part):
    """The same counts before, during and after one fault (by the time the sink checked)."""

    before: AuthCounts = Field(default_factory=AuthCounts, description="before its onset")
    during: AuthCounts = Field(default_factory=AuthCounts, description="onset to clear")
    after: AuthCounts = Field(default_factory=AuthCounts, description="from its clear on")


class AuthFault(AuthPhases):
    """One fault window (as `failovers` has them) and the checks around it."""

    target: str = Field(default="", description="the server the fault was on")
    kind: str = Field(default="", description="the fault kind")
    onset_s: float = Field(default=0.0, description="seconds from run start")
    cleared_s: float | None = Field(default=None, description="null: still on at the end")


class AuthSink(AuthCounts):
    """One verifying sink: every message it checked."""

    enforce: str = Field(
        default="", description='its verify.enforce (gmail, yahoo, outlook, none; "": unknown)'
    )


class AuthPath(AuthCounts):
    """One delivery path: the server the sender handed the message to, the verifying sink
    it reached, and the address that delivered it there (an MTA's sending address)."""

    server: str = Field(
        default="",
        description="the server that took the message from the sender (its 250; else its "
        "last attempt's server); \"\": unknown (no sender's journal)",
    )
    sink: str = Field(default="", description="the verifying sink")
    peer: str = Field(default="", description="the address that delivered it to the sink")
    helo: list[str] = Field(
        default_factory=list, description="the EHLO names it gave (receipts and refusals)"
    )
    faults: list[AuthPhases] = Field(
        default_factory=list, description="around each fault of auth.faults, in its order"
    )


# A server's name in `auth.servers` and `auth.paths` when the sender's journal is not there.
AUTH_UNKNOWN_SERVER = "-"


class Auth(AuthCounts):
    """Authentication of the mail the verifying sinks checked, as a provider sees it: the
    counts of every such message at the top, then per sink, per path, around each fault."""

    # The whole run's figures, with their senses for `maildrill compare` (AuthCounts').
    dmarc_fail: Annotated[int, LOWER] = Field(
        default=0, description="delivered, though DMARC fails (p=none or quarantine, or not "
        "enforced): would go to spam or be rejected"
    )  # fmt: skip
    unauthenticated: Annotated[int, LOWER] = Field(
        default=0, description="delivered with neither SPF nor DKIM passing"
    )
    refused: Annotated[int, LOWER] = Field(
        default=0, description="refused by the sink's enforce: with the provider's reply"
    )
    spf_pass_share: Annotated[float | None, HIGHER] = Field(
        default=None, description="messages passing SPF / with_verdicts; null: none"
    )
    dkim_pass_share: Annotated[float | None, HIGHER] = Field(
        default=None, description="messages passing DKIM / with_verdicts"
    )
    dmarc_pass_share: Annotated[float | None, HIGHER] = Field(
        default=None, description="messages passing DMARC / with_verdicts"
    )
    ptr_pass_share: Annotated[float | None, HIGHER] = Field(
        default=None, description="messages passing PTR / with_verdicts"
    )
    clean_share: Annotated[float | None, HIGHER] = Field(
        default=None, description="clean / checked: refusals count as not clean"
    )

    sinks: dict[str, AuthSink] = Field(default_factory=dict, description="per verifying sink")
    servers: dict[str, AuthCounts] = Field(
        default_factory=dict,
        description="per server the sender handed the mail to, every sink and address "
        '("-": unknown, no sender\'s journal)',
    )
    paths: dict[str, AuthPath] = Field(
        default_factory=dict, description="per path, keyed SERVER>SINK@PEER (server - unknown)"
    )
    faults: list[AuthFault] = Field(
        default_factory=list, description="around each fault, in order of onset"
    )


# -- the whole -------------------------------------------------------------------------------


class Summary(Part):
    """summary.json. Docs: docs/summary.md (generated); definitions in each field."""

    scenario: str = Field(description="the scenario's name")
    run_id: str = Field(default="", description="every message id starts with it")
    started_at: float = Field(description="t0, epoch seconds: times in the run count from it")
    duration_s: float = Field(description="t0 to the end of the last attempt")
    partial: bool = Field(description="the run was interrupted (or never started)")
    messages: Messages = Field(description="the fate of every planned message")
    recipients: Recipients = Field(
        default_factory=Recipients,
        description="the same fates counted per recipient (a message split by destination)",
    )
    throughput: Throughput
    latency_ms: Annotated[Latency, LOWER] = Field(
        description="service time (end - start) of accepted attempts"
    )
    response_time_ms: Annotated[Percentiles, LOWER] = Field(
        default_factory=Percentiles,
        description="end of the accepted attempt - the message's intended send time "
        "(waiting, retries and failover included: no coordinated omission)",
    )
    lateness_ms: Annotated[Percentiles, LOWER] = Field(
        default_factory=Percentiles,
        description="start - intended send time of first attempts",
    )
    errors: dict[str, int] = Field(
        description='failed attempts by reply ("421 4.7.0") or, with no reply, by outcome '
        'and phase ("refused at connect")'
    )
    failovers: list[Failover] = Field(description="one per fault, in order of onset")
    relay: dict[str, BackupMx] = Field(default_factory=dict, description="per backup MX")
    proxies: dict[str, FaultProxy] = Field(default_factory=dict, description="per fault proxy")
    mta: dict[str, MtaDelivery] = Field(default_factory=dict, description="per MTA under test")
    probes: Probes = Field(default_factory=Probes, description="health probes per server")
    preflight: Preflight | None = Field(default=None, description="null: no pre-flight check")
    journal_problems: JournalProblems = Field(description="journal lines left out, and why")
    harness: Harness = Field(default_factory=Harness, description="the run's own record")
    received: Received | None = Field(
        default=None,
        description="receipts alone, for a run without the sender's journal; null with one",
    )
    needs_sender_journal: list[str] = Field(
        default_factory=list,
        description="what this summary could not measure without the sender's journal "
        "(attempts.csv): those keys read 0 or null, and SLOs on them are not measured",
    )
    capacity: Capacity = Field(default_factory=Capacity, description="step-load capacity")
    backlog: Backlog = Field(
        default_factory=Backlog, description="messages due and not yet accepted, over time"
    )
    bounces: Bounces = Field(
        default_factory=Bounces, description="hard and soft bounces per recipient; suppression"
    )
    streams: dict[str, StreamResult] = Field(
        default_factory=dict,
        description="per stream of the campaign, in its order: counts, latency, response "
        "time, lateness and faults, as the whole run's (empty without the sender's journal)",
    )
    auth: Auth | None = Field(
        default=None,
        description="SPF, DKIM, DMARC and PTR at sinks with verify: per sink, per path, "
        "around each fault; null: no sink verifies",
    )
    dns: Dns | None = Field(
        default=None,
        description="the senders following DNS changes, and DNS deferrals; null: the run "
        "served no DNS",
    )
    slo: SloVerdict = Field(
        default_factory=SloVerdict, description="each SLO rule's measured value and verdict"
    )


# -- SLO metrics -----------------------------------------------------------------------------

# The journals (kinds, as loadtest.analysis.journals reads them) a metric is counted from.
# A message's fate is decided by its attempts and by every place it can be found.
MESSAGE_JOURNALS = ("attempts", "receipts", "refusals", "relay", "proxy", "mta_queue")
FAULT_JOURNALS = ("attempts", "faults")
ATTEMPTS_ONLY = ("attempts",)  # latency, lateness, throughput: the client's own record
AUTH_JOURNALS = ("receipts", "refusals")  # the verdicts, and what enforcement refused


@dataclass(frozen=True)
class SloMetric:
    """What an SLO rule may name: where its value is in the Summary.

    `path` is dotted attribute access from the Summary ("latency_ms.p95"); a path through
    `failovers[]` takes the worst (highest) over the faults, and no value when any fault
    lacks one; `per` divides by a second path (null when that is 0). With a `stream`, both
    paths start at that stream's part (`summary.streams[stream]`, a `StreamResult`), and
    there is no value when the summary has no such stream.
    """

    path: str
    sources: tuple[str, ...] = ATTEMPTS_ONLY
    per: str | None = None
    stream: str | None = None

    @property
    def over_faults(self) -> bool:
        return self.path.startswith("failovers[].")

    @property
    def keys(self) -> list[str]:
        """The summary.json keys the value is read from, from the top ("streams.X.lost")."""
        root = "" if self.stream is None else f"streams.{self.stream}."
        return [root + path for path in (self.path, self.per) if path is not None]

    def value(self, summary: Summary) -> float | None:
        root: Any = summary
        if self.stream is not None:
            root = summary.streams.get(self.stream)
            if root is None:
                return None
        if self.over_faults:
            key = self.path.removeprefix("failovers[].")
            values = [getattr(f, key) for f in root.failovers]
            if not values or any(v is None for v in values):
                return None
            worst: float = max(values)
            return worst
        value: float | None = _at(root, self.path)
        if self.per is None:
            return value
        whole = _at(root, self.per)
        return value / whole if value is not None and whole else None


def _at(node: Any, path: str) -> Any:
    """The value at a dotted path; None through a part that is absent (`auth` is null
    when no sink verifies: its metrics are not measured)."""
    for name in path.split("."):
        if node is None:
            return None
        node = getattr(node, name)
    return node


_COUNTS = (
    "lost", "duplicates", "phantom", "failed", "stranded", "not_sent", "unverified",
    "refused_downstream",
)  # fmt: skip
SLO_METRICS: Mapping[str, SloMetric] = {
    **{name: SloMetric(f"messages.{name}", MESSAGE_JOURNALS) for name in _COUNTS},
    **{f"{p}_latency_ms": SloMetric(f"latency_ms.{p}") for p in ("p50", "p95", "p99")},
    "max_latency_ms": SloMetric("latency_ms.max"),
    "p95_lateness_ms": SloMetric("lateness_ms.p95"),
    "p99_lateness_ms": SloMetric("lateness_ms.p99"),
    **{
        f"{p}_response_time_ms": SloMetric(f"response_time_ms.{p}")
        for p in ("p50", "p95", "p99", "max")
    },
    "min_throughput": SloMetric("throughput.min_rolling_msgs_per_s"),
    "mean_throughput": SloMetric("throughput.mean_msgs_per_s"),
    "accepted_ratio": SloMetric("messages.accepted", MESSAGE_JOURNALS, per="messages.planned"),
    "bounce_rate": SloMetric("bounces.rate"),
    "hard_bounce_rate": SloMetric("bounces.hard_rate"),
    "hard_bounces": SloMetric("bounces.hard"),
    "soft_bounces": SloMetric("bounces.soft"),
    **{
        name: SloMetric(f"failovers[].{name}", FAULT_JOURNALS)
        for name in ("detection_s", "failover_s", "failback_s", "recovery_s")
    },
    **{
        f"recipients_{name}": SloMetric(f"recipients.{name}", MESSAGE_JOURNALS)
        for name in ("lost", "duplicated", "stranded", "refused_downstream")
    },
    "dmarc_fail": SloMetric("auth.dmarc_fail", AUTH_JOURNALS),
    "unauthenticated": SloMetric("auth.unauthenticated", AUTH_JOURNALS),
    "auth_refused": SloMetric("auth.refused", AUTH_JOURNALS),
    **{
        f"{check}_pass_share": SloMetric(f"auth.{check}_pass_share", AUTH_JOURNALS)
        for check in ("spf", "dkim", "dmarc", "ptr")
    },
    "auth_clean_share": SloMetric("auth.clean_share", AUTH_JOURNALS),
    "dns_follow_s": SloMetric("dns.follow_s", FAULT_JOURNALS),
    "dns_stale_attempts": SloMetric("dns.stale_attempts", FAULT_JOURNALS),
    "dns_deferred": SloMetric("dns.deferred", FAULT_JOURNALS),
}

# What an SLO may measure on one stream, `streams.STREAM.METRIC`: the whole run's metric of
# that name, its path in the stream's part (`StreamResult`, which has the counts of
# `messages` at its top, and the percentiles and faults of the whole run).
_PER_STREAM = (
    *(f"{p}_latency_ms" for p in ("p50", "p95", "p99", "max")),
    *(f"{p}_response_time_ms" for p in ("p50", "p95", "p99", "max")),
    "p95_lateness_ms", "p99_lateness_ms",
    "detection_s", "failover_s", "failback_s", "recovery_s",
)  # fmt: skip
STREAM_SLO_METRICS: Mapping[str, SloMetric] = {
    **{name: SloMetric(name, MESSAGE_JOURNALS) for name in _COUNTS},
    "accepted_ratio": SloMetric("accepted", MESSAGE_JOURNALS, per="planned"),
    **{name: SLO_METRICS[name] for name in _PER_STREAM},
}
STREAM_METRIC_PREFIX = "streams."


def stream_metric(name: str) -> tuple[str, str] | None:
    """(stream, metric) of a per-stream SLO name, `streams.transactional.p95_latency_ms`;
    None for any other name. The metric is the last dotted part: a stream's name may
    hold dots, a metric's never does."""
    if not name.startswith(STREAM_METRIC_PREFIX):
        return None
    stream, dot, metric = name.removeprefix(STREAM_METRIC_PREFIX).rpartition(".")
    if not dot or not stream or metric not in STREAM_SLO_METRICS:
        return None
    return stream, metric


def slo_metric(name: str) -> SloMetric | None:
    """What an SLO rule's metric measures: one of SLO_METRICS, or one of
    STREAM_SLO_METRICS on a stream (`streams.STREAM.METRIC`); None when neither."""
    if name in SLO_METRICS:
        return SLO_METRICS[name]
    parts = stream_metric(name)
    if parts is None:
        return None
    stream, metric = parts
    return replace(STREAM_SLO_METRICS[metric], stream=stream)
