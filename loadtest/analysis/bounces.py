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

from collections.abc import Iterable

import numpy as np
import pandas as pd

from loadtest.analysis.summary_model import BounceRates, Bounces
from loadtest.bounce_codes import bounce_class, status_key, suppresses
from loadtest.campaign import MessageFactory
from loadtest.scenario import Scenario
from loadtest.suppression import SUPPRESSED
from maildrill.mailboxes import local_matches

NOT_SENT = ("s", "f")  # rcpt_replies' marks of a recipient left out of an attempt
_CELL_COLUMNS = ["msg_id", "stream", "attempt", "start", "server", "outcome", "phase", "code",
                 "enhanced", "final"]  # fmt: skip
_DEFAULTS = {"stream": "", "phase": "", "code": np.nan, "enhanced": "", "final": 1.0}


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


def cells(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per attempt and recipient of its message: the attempt's columns, the
    recipient's `position` in the message and its `entry` in rcpt_replies. An older
    journal without the column: every recipient of the envelope, no RCPT reply known."""
    frame = attempts[[c for c in _CELL_COLUMNS if c in attempts]].reset_index(drop=True)
    for name, default in _DEFAULTS.items():  # an older or hand-made journal may lack them
        if name not in frame:
            frame[name] = default
    if "rcpt_replies" in attempts:
        text = attempts["rcpt_replies"].fillna("").astype(str).reset_index(drop=True)
    else:
        count = attempts["recipients"].fillna(1).clip(lower=1).astype(int).reset_index(drop=True)
        text = count.map(lambda n: ";" * (n - 1))
    single = ~text.str.contains(";", regex=False)
    one = frame[single.to_numpy()].assign(entry=text[single], position=0)
    many = frame[~single.to_numpy()].assign(entry=text[~single].str.split(";"))
    if len(many):
        many = many.explode("entry")
        many["position"] = many.groupby(level=0).cumcount()
    out = pd.concat([one, many], ignore_index=True) if len(many) else one
    out["entry"] = out["entry"].astype(str)
    return out


def _last_words(frame: pd.DataFrame) -> pd.DataFrame:
    """Per recipient carried by some attempt: the cell of the last attempt that carried it,
    with its last word: `code`, `enhanced`, `stage` (0 code: accepted or no reply)."""
    carried = frame[~frame["entry"].isin(NOT_SENT)]
    if carried.empty:
        return carried.assign(word_code=0, word_enhanced="", stage="", accepted=False)
    carried = carried.sort_values(["msg_id", "position", "attempt", "start"], kind="stable")
    last = carried.drop_duplicates(["msg_id", "position"], keep="last").copy()
    entry = last["entry"]
    rcpt_code = pd.to_numeric(entry.str.slice(0, 3), errors="coerce").fillna(0)
    refused = (rcpt_code >= 400).to_numpy()
    attempt_code = last["code"].fillna(0).to_numpy(dtype="float64") if "code" in last else 0
    attempt_enhanced = last["enhanced"].fillna("").astype(str).to_numpy()
    phase = last["phase"].fillna("").astype(str).to_numpy()
    # A refusal of the message (its code >= 400) speaks for every recipient it carried that
    # its RCPT did not refuse.
    message_refused = np.asarray(attempt_code) >= 400
    last["word_code"] = np.where(
        refused, rcpt_code.to_numpy(), np.where(message_refused, attempt_code, 0)
    ).astype(int)
    last["word_enhanced"] = np.where(
        refused, entry.str.slice(4).to_numpy(), np.where(message_refused, attempt_enhanced, "")
    )
    last["stage"] = np.where(refused, "rcpt", np.where(message_refused, phase, ""))
    last["accepted"] = (last["outcome"].astype(str) == "accepted").to_numpy() & ~refused
    return last


def _rates(attempted: int, hard: int, soft: int) -> BounceRates:
    return BounceRates(
        attempted=attempted,
        hard=hard,
        soft=soft,
        rate=round((hard + soft) / attempted, 6) if attempted else None,
    )


def summarise(
    attempts: pd.DataFrame,
    suppressed_rows: pd.DataFrame,
    scenario: Scenario | None = None,
    run_id: str = "",
    planned: int = 0,
) -> Bounces:
    """summary.json's `bounces` (each field defined in summary_model.Bounces)."""
    frame = cells(attempts) if len(attempts) else None
    extra = cells(suppressed_rows) if len(suppressed_rows) else None
    parts = [f for f in (frame, extra) if f is not None]
    every = pd.concat(parts, ignore_index=True) if parts else None
    finished: set[str] = set()
    n_suppressed = 0
    if every is not None:
        finished = set(every.loc[every["final"].fillna(1).astype(bool), "msg_id"])
        skipped = every.loc[every["entry"] == "s", ["msg_id", "position"]]
        n_suppressed = len(skipped.drop_duplicates())
    last = _last_words(frame) if frame is not None else None
    if frame is None or last is None or last.empty:
        return Bounces(
            attempted=0, hard=0, soft=0, rate=None, hard_rate=None, by_class={},
            by_status={}, suppressed=n_suppressed, per_stream={}, per_server={},
            **_plan_counts(scenario, run_id, planned, []),
        )  # fmt: skip
    code = last["word_code"].to_numpy()
    hard = (code >= 500) & (code < 600)
    soft = (code >= 400) & (code < 500) & last["msg_id"].isin(finished).to_numpy()
    by_status: dict[str, int] = {}
    by_class: dict[str, int] = {}
    bounced = last[hard | soft]
    for c, e in zip(bounced["word_code"], bounced["word_enhanced"], strict=True):
        status, kind = status_key(int(c), str(e)), bounce_class(int(c), str(e))
        by_status[status] = by_status.get(status, 0) + 1
        by_class[kind] = by_class.get(kind, 0) + 1
    # A recipient counts as attempted at every server an attempt carried it to; its bounce
    # at the server that gave its last word.
    carried = frame[~frame["entry"].isin(NOT_SENT)]
    at_servers = carried.drop_duplicates(["msg_id", "position", "server"])
    per_server: dict[str, BounceRates] = {}
    for server, n in at_servers.groupby("server", observed=True).size().items():
        here = (last["server"] == server).to_numpy()
        per_server[str(server)] = _rates(int(n), int((hard & here).sum()), int((soft & here).sum()))
    per_stream: dict[str, BounceRates] = {}
    streams = last["stream"].fillna("").astype(str).to_numpy()
    for name in sorted(set(streams)):
        mine = streams == name
        per_stream[name] = _rates(
            int(mine.sum()), int((hard & mine).sum()), int((soft & mine).sum())
        )
    attempted, n_hard, n_soft = len(last), int(hard.sum()), int(soft.sum())
    return Bounces(
        attempted=attempted,
        hard=n_hard,
        soft=n_soft,
        rate=round((n_hard + n_soft) / attempted, 6),
        hard_rate=round(n_hard / attempted, 6),
        by_class=dict(sorted(by_class.items())),
        by_status=dict(sorted(by_status.items())),
        suppressed=n_suppressed,
        per_stream=per_stream,
        per_server=dict(sorted(per_server.items())),
        **_plan_counts(scenario, run_id, planned, _hard_bounced(last[hard])),
    )


def _hard_bounced(words: pd.DataFrame) -> list[tuple[str, int, bool]]:
    """(msg_id, position, whether the bounce suppresses the address) per hard bounce."""
    columns = ("msg_id", "position", "stage", "word_code", "word_enhanced")
    return [
        (str(m), int(p), suppresses(str(s), int(c), str(e)))
        for m, p, s, c, e in zip(*(words[c] for c in columns), strict=True)
    ]


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
