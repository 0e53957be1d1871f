"""Bounces per recipient: hard and soft, by class, per stream and per server; suppression.

Every count is per recipient (a message and one of its recipients), from the attempts
journal's `rcpt_replies` (the reply to each RCPT) and each attempt's own reply, decided
by codes (loadtest.bounce_codes), never by text. A recipient's *last word* is its result
in the last attempt that carried it: the reply to its RCPT when that was a refusal; else
the attempt's: accepted, or the 4xx/5xx the message got at MAIL, DATA or the dot, or no
reply at all (a timeout, a dropped connection). A *hard bounce* is a last word 5xx; a
*soft bounce* a last word 4xx once its message is finished (no retry follows). Bounce
rate = (hard + soft) / attempted recipients. The definitions, precisely:
docs/metrics.md, "Bounces".

Rows whose outcome is `suppressed` are no SMTP attempt (loadtest.suppression): a message
with every recipient left suppressed. `split_suppressed` takes them out of the attempts
when a run directory is loaded (loaded.compact), so no other analysis sees them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis import msg_keys
from loadtest.analysis.summary_model import BounceRates, Bounces
from loadtest.bounce_codes import bounce_class, status_key, suppresses
from loadtest.campaign import MessageFactory
from loadtest.scenario import Scenario
from loadtest.suppression import SUPPRESSED
from maildrill.mailboxes import local_matches

NOT_SENT = ("s", "f")  # rcpt_replies' marks of a recipient left out of an attempt


def split_suppressed(attempts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the SMTP attempts, the `suppressed` rows). A message that a suppressed row ended
    had its last SMTP attempt journaled as not final (a retry was due when it was
    written); no attempt followed it, so it is marked final here."""
    if attempts.empty or "outcome" not in attempts:
        return attempts, attempts.iloc[0:0]
    mask = (attempts["outcome"] == SUPPRESSED).to_numpy()
    if not mask.any():
        return attempts, attempts.iloc[0:0]
    suppressed = attempts[mask]
    rest = attempts[~mask]
    ended = rest["msg_id"].isin(set(suppressed["msg_id"]))
    if ended.any() and "final" in rest:
        rest = rest.copy()
        order = rest[ended].sort_values(["attempt", "start"])
        last = order.drop_duplicates("msg_id", keep="last").index
        rest.loc[last, "final"] = 1.0
    return rest, suppressed


@dataclass(frozen=True)
class Entries:
    """The distinct rcpt_replies entries, parsed once: for each, whether it was carried
    (not "s" or "f"), was marked "s", and the RCPT reply's code (0: none) and enhanced."""

    carried: np.ndarray
    suppressed: np.ndarray
    code: np.ndarray
    enhanced: np.ndarray

    @classmethod
    def parse(cls, values: list[str]) -> Entries:
        codes = []
        for v in values:
            head = v[:3]
            codes.append(int(head) if head.isdigit() else 0)
        return cls(
            carried=np.array([v not in NOT_SENT for v in values], dtype=bool),
            suppressed=np.array([v == "s" for v in values], dtype=bool),
            code=np.array(codes, dtype=np.int64),
            enhanced=np.array([v[4:] for v in values], dtype=object),
        )


@dataclass(frozen=True)
class Cells:
    """One cell per attempt and recipient of its message, as parallel arrays: `row` (the
    attempt's place in the frame), `msg` (the message, a code), `position` (the
    recipient's place in the message) and `entry` (its rcpt_replies entry, a code into
    `entries`)."""

    row: np.ndarray
    msg: np.ndarray
    position: np.ndarray
    entry: np.ndarray
    entries: Entries


def cells(attempts: pd.DataFrame, msg: np.ndarray) -> Cells:
    """The cells of the attempts (whose messages' codes are `msg`). Each distinct
    rcpt_replies text is split once: a run repeats a handful of them. An older journal
    without the column: every recipient of the envelope, no RCPT reply known."""
    if "rcpt_replies" in attempts:
        text_code, texts = _factorized(attempts, "rcpt_replies")
    else:
        count = attempts["recipients"].fillna(1).clip(lower=1).astype(int).to_numpy()
        text = np.array([";" * (n - 1) for n in count], dtype=object)
        text_code, texts = pd.factorize(text)
    split = [str(t).split(";") for t in texts]
    values: list[str] = []
    offsets = np.zeros(len(split), dtype=np.int64)
    for i, parts in enumerate(split):
        offsets[i] = len(values)
        values.extend(parts)
    lengths = np.array([len(parts) for parts in split], dtype=np.int64)[text_code]
    rows = np.repeat(np.arange(len(text_code)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(len(rows)) - starts
    entry_values, entry_of_value = np.unique(np.array(values, dtype=object), return_inverse=True)
    entry = entry_of_value[offsets[text_code[rows]] + position]
    return Cells(rows, msg[rows], position, entry, Entries.parse(list(entry_values)))


def _column(frame: pd.DataFrame, name: str, default: str | float) -> np.ndarray:
    """A column as text (`default` a str) or numbers; `default` where the journal has no
    such column (an older or hand-made one) or an empty cell."""
    if isinstance(default, str):
        if name not in frame:
            return np.full(len(frame), default, dtype=object)
        column = frame[name]
        text: np.ndarray = column.astype(object).where(column.notna(), default).to_numpy()
        return text
    if name not in frame:
        return np.full(len(frame), default, dtype="float64")
    numbers: np.ndarray = frame[name].to_numpy(dtype="float64")
    return numbers


def _text_at(frame: pd.DataFrame, name: str, rows: np.ndarray) -> np.ndarray:
    """`_column(frame, name, "")[rows]`, made for those rows only."""
    if name not in frame:
        return np.full(len(rows), "", dtype=object)
    column = frame[name].iloc[rows]
    text: np.ndarray = column.astype(object).where(column.notna(), "").to_numpy()
    return text


def _factorized(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize(_column(frame, name, ""))`: codes, and the values in order of first
    appearance. A column of categories (loadtest.analysis.loaded) is answered from its
    codes (`msg_keys.factorize`): no text object per row, and no hash table sized for
    every row, which `pd.factorize` of a million texts allocates however few differ."""
    column = frame.get(name)
    if (
        column is not None
        and isinstance(column.dtype, pd.CategoricalDtype)
        and not column.isna().any()  # a missing value reads as "" here
    ):
        return msg_keys.factorize(column)
    codes, uniques = pd.factorize(_column(frame, name, ""))
    return np.asarray(codes), pd.Index(uniques)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct integers, sorted (np.unique hashes, several times slower)."""
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _rates(attempted: int, hard: int, soft: int) -> BounceRates:
    return BounceRates(
        attempted=attempted,
        hard=hard,
        soft=soft,
        rate=round((hard + soft) / attempted, 6) if attempted else None,
    )


@dataclass
class Rates:
    """Recipients attempted, hard and soft bounced (a stream's, a server's): added."""

    attempted: int = 0
    hard: int = 0
    soft: int = 0


@dataclass
class Tally:
    """The bounces of a share of the messages, every count per recipient (added over
    shares, `loadtest.analysis.tally`); `hard_bounced`: (message id, recipient position,
    whether the bounce suppresses the address) of each hard bounce, for the plan's counts
    (`_plan_counts`, made once for the run)."""

    attempted: int = 0
    hard: int = 0
    soft: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    per_stream: dict[str, Rates] = field(default_factory=dict)
    per_server: dict[str, Rates] = field(default_factory=dict)
    hard_bounced: list[tuple[str, int, bool]] = field(default_factory=list)


def summarise(
    attempts: pd.DataFrame,
    suppressed_rows: pd.DataFrame,
    scenario: Scenario | None = None,
    run_id: str = "",
    planned: int = 0,
) -> Bounces:
    """summary.json's `bounces` (each field defined in summary_model.Bounces)."""
    return finish(tally(attempts, suppressed_rows), scenario, run_id, planned)


def finish(
    counted: Tally, scenario: Scenario | None = None, run_id: str = "", planned: int = 0
) -> Bounces:
    """summary.json's `bounces` from every share's `tally` added."""
    attempted, n_hard, n_soft = counted.attempted, counted.hard, counted.soft
    return Bounces(
        attempted=attempted,
        hard=n_hard,
        soft=n_soft,
        rate=round((n_hard + n_soft) / attempted, 6) if attempted else None,
        hard_rate=round(n_hard / attempted, 6) if attempted else None,
        by_class=dict(sorted(counted.by_class.items())),
        by_status=dict(sorted(counted.by_status.items())),
        suppressed=counted.suppressed,
        per_stream={
            name: _rates(r.attempted, r.hard, r.soft)
            for name, r in sorted(counted.per_stream.items())
        },
        per_server={
            name: _rates(r.attempted, r.hard, r.soft)
            for name, r in sorted(counted.per_server.items())
        },
        **_plan_counts(scenario, run_id, planned, counted.hard_bounced),
    )


def tally(attempts: pd.DataFrame, suppressed_rows: pd.DataFrame) -> Tally:
    """The bounces of these attempts and rows not sent (every row of their messages)."""
    frame = (
        pd.concat([attempts, suppressed_rows], ignore_index=True)
        if len(suppressed_rows)
        else attempts.reset_index(drop=True)
    )
    if frame.empty:
        return Tally()
    msg, msg_ids = msg_keys.factorize(frame["msg_id"])  # by the codes of shared keys
    c = cells(frame, msg)
    e = c.entries
    # Messages finished: a journal row of theirs is final (a suppressed row always is).
    finished = np.zeros(len(msg_ids), dtype=bool)
    final = _column(frame, "final", 1.0)
    finished[msg[np.nan_to_num(final, nan=1.0) != 0]] = True
    width = int(c.position.max()) + 1
    key = c.msg.astype(np.int64) * width + c.position  # one recipient of one message
    n_suppressed = _distinct(key[e.suppressed[c.entry]]).size

    # The last attempt that carried each recipient: the last of its cells in (attempt,
    # start) order.
    carried = np.flatnonzero(e.carried[c.entry])
    attempt_no = _column(frame, "attempt", 1.0)
    start = _column(frame, "start", 0.0)
    rows = c.row[carried]
    order = carried[np.lexsort((start[rows], attempt_no[rows], key[carried]))]
    ordered_key = key[order]
    last = order[np.r_[ordered_key[1:] != ordered_key[:-1], True]] if len(order) else order
    row = c.row[last]
    rcpt_code = e.code[c.entry[last]]
    attempt_code = np.nan_to_num(_column(frame, "code", np.nan), nan=0.0).astype(np.int64)
    refused = rcpt_code >= 400
    message_refused = attempt_code[row] >= 400  # speaks for every recipient its RCPT took
    word = np.where(refused, rcpt_code, np.where(message_refused, attempt_code[row], 0))
    hard = (word >= 500) & (word < 600)
    soft = (word >= 400) & (word < 500) & finished[c.msg[last]]

    by_status: dict[str, int] = {}
    by_class: dict[str, int] = {}
    bounced = np.flatnonzero(hard | soft)
    # The enhanced codes of the bounced recipients only: as text for every recipient
    # they were several object arrays the size of the run (issue 18).
    enhanced = np.where(
        refused[bounced],
        e.enhanced[c.entry[last[bounced]]],
        np.where(message_refused[bounced], _text_at(frame, "enhanced", row[bounced]), ""),
    )
    for (code, text), n in Counter(zip(word[bounced], enhanced, strict=True)).items():
        status, kind = status_key(int(code), str(text)), bounce_class(int(code), str(text))
        by_status[status] = by_status.get(status, 0) + n
        by_class[kind] = by_class.get(kind, 0) + n

    # A recipient counts as attempted at every server an attempt carried it to; its bounce
    # at the server that gave its last word.
    server_code, servers = _factorized(frame, "server")
    at_server = _distinct(key[carried] * len(servers) + server_code[c.row[carried]])
    attempted_at = np.bincount(at_server % len(servers), minlength=len(servers))
    last_server = server_code[row]
    per_server = {
        str(name): Rates(
            int(attempted_at[i]),
            int((hard & (last_server == i)).sum()),
            int((soft & (last_server == i)).sum()),
        )
        for i, name in enumerate(servers)
        if attempted_at[i]
    }
    stream_code, streams = _factorized(frame, "stream")
    last_stream = stream_code[row]
    per_stream = {
        str(name): Rates(
            int((last_stream == i).sum()),
            int((hard & (last_stream == i)).sum()),
            int((soft & (last_stream == i)).sum()),
        )
        for i, name in enumerate(streams)
        if (last_stream == i).any()
    }
    attempted, n_hard, n_soft = len(last), int(hard.sum()), int(soft.sum())
    hard_rows = np.flatnonzero(hard)
    stage = np.where(refused[hard_rows], "rcpt", _text_at(frame, "phase", row[hard_rows]))
    hard_enhanced = enhanced[np.searchsorted(bounced, hard_rows)]  # hard ones bounced too
    hard_bounced = [
        (str(msg_ids[c.msg[last[i]]]), int(c.position[last[i]]),
         suppresses(str(stage[j]), int(word[i]), str(hard_enhanced[j])))
        for j, i in enumerate(hard_rows)
    ]  # fmt: skip
    return Tally(
        attempted=attempted,
        hard=n_hard,
        soft=n_soft,
        by_class=by_class,
        by_status=by_status,
        suppressed=n_suppressed,
        per_stream=per_stream,
        per_server=per_server,
        hard_bounced=hard_bounced,
    )


def _plan_counts(
    scenario: Scenario | None,
    run_id: str,
    planned: int,
    hard_bounced: Iterable[tuple[str, int, bool]],
) -> dict[str, int | None]:
    """What the campaign plan says of the recipients (null without a scenario, or when no
    stream sends to unknown mailboxes): how many it made unknown, how many of those hard
    bounced, and the hard bounces of an address that had already hard-bounced in the run
    with a bounce that suppresses (more than one sending process, or messages to it in
    flight together)."""
    none: dict[str, int | None] = {"unknown": None, "unknown_bounced": None, "repeat_bounces": None}
    if scenario is None or not run_id:
        return none
    streams = scenario.streams()
    if not any(s.unknown_recipients > 0 for s in streams):
        return none
    factory = MessageFactory(
        streams, run_id, scenario.campaign.seed, scenario.campaign.allowed_recipient_domains
    )
    total = planned or scenario.campaign.build_schedule().total
    unknown = sum(
        local_matches(address) for k in range(total) for address in factory.envelope(k)[1]
    )
    prefix = f"{run_id}-"
    unknown_bounced = 0
    seen: set[str] = set()
    repeats = 0
    for msg_id, position, suppressing in hard_bounced:
        if not msg_id.startswith(prefix) or not msg_id[len(prefix) :].isdigit():
            continue
        address = factory.envelope(int(msg_id[len(prefix) :]))[1][position].lower()
        unknown_bounced += local_matches(address)
        if suppressing:
            repeats += address in seen
            seen.add(address)
    return {"unknown": unknown, "unknown_bounced": unknown_bounced, "repeat_bounces": repeats}
