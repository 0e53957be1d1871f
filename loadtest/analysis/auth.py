"""Authentication as the providers would see it: what the verifying sinks found, per sink,
per delivery path and around each fault (summary.json's `auth`; docs/metrics.md,
"Authentication").

A sink with `verify:` journals each receipt's SPF, DKIM, DMARC and PTR verdicts
(sinks.authcheck; the receipts' columns `spf`, `dkim`, `dmarc`, `ptr`). With `enforce:` it
answers failing mail with the provider's refusal instead, and journals that refusal with
the verdicts that decided it (refusals journal: stage `dot`, the provider's enhanced code,
`REFUSAL_CODES`, the same verdict columns): such a message is counted as refused, never as
delivered, and its verdicts count with the deliveries' in the verdict tallies and pass
shares, as a provider's DMARC aggregate report counts every message it saw, whatever it
did with it. Otherwise a secondary whose mail is all refused would leave the shares at
100 %. A refusal in a journal older than those columns counts as refused, in no verdict.

A path is the server the sender handed the message to (its 250; for a message no server
took, its last attempt's server), the verifying sink, and the address that delivered it
there: an MTA under test sends from its own address, so the path says whether the primary
or the secondary delivered. The split around a fault is by the time the sink checked the
message, which is what a provider sees: mail an MTA held through an outage and delivered
after it counts after.

A receipt without verdicts (a sink without `verify:`, a proxy's witness, a journal older
than the columns) is not verified: left out, never counted as failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from loadtest.analysis import tally as tally_mod
from loadtest.analysis.fault_windows import FaultWindow
from loadtest.analysis.summary_model import (
    AUTH_UNKNOWN_SERVER,
    Auth,
    AuthCounts,
    AuthFault,
    AuthPath,
    AuthPhases,
    AuthSink,
)
from loadtest.server_spec import ServerSpec
from sinks.authcheck.enforce import REFUSAL_CODES

PASS = "pass"
FAIL = "fail"
CHECKS = ("spf", "dkim", "dmarc", "ptr")
_ANY_PROVIDER = frozenset().union(*REFUSAL_CODES.values())
_SHARE_DIGITS = 6


def verifying_sinks(servers: Sequence[ServerSpec]) -> dict[str, str]:
    """The scenario's sinks with `verify:`, each with its `enforce` ("none" by default)."""
    return {
        s.name: str((s.sink.verify.model_extra or {}).get("enforce", "none"))
        for s in servers
        if s.local and s.sink.verify is not None
    }


def summarise(
    receipts: pd.DataFrame,
    refusals: pd.DataFrame,
    attempts: pd.DataFrame,
    per: pd.DataFrame,
    verifying: Mapping[str, str],
    windows: Sequence[FaultWindow],
    t0: float,
    campaign_only: bool = False,
) -> Auth | None:
    """The `auth` part; None when no sink verifies (neither the scenario's `verify:` nor
    any receipt with verdicts says one did).

    `receipts` and `refusals` are the sinks' journals, `attempts` and `per` the sender's
    (empty without one: the paths' server is then unknown), `verifying` the scenario's
    verifying sinks and their `enforce`, `windows` the run's fault windows. With
    `campaign_only` (a run with maildrill's sender) only the campaign's mail counts, the
    messages with an X-Maildrill-Id: not the bounce an MTA under test sends back to the
    sender after a provider refused its mail, which is no campaign message."""
    counted = tally(receipts, refusals, attempts, per, campaign_only)
    return finish(counted, refusals, verifying, windows, t0, campaign_only)


@dataclass
class Tally:
    """A share of the messages' receipts with verdicts, each with the server its message
    was handed to (`server`), and that server for the messages of the refusals journal
    among the share's (added over shares: the rows put end to end).

    A delivered row keeps only what `finish` counts: its time and, as categories, its
    sink, server, peer, HELO and verdicts (a byte each, where text took a string object:
    ten million verified receipts would otherwise hold gigabytes to the end)."""

    delivered: list[pd.DataFrame] = field(default_factory=list)
    handed: dict[str, str] = field(default_factory=dict)


def tally(
    receipts: pd.DataFrame,
    refusals: pd.DataFrame,
    attempts: pd.DataFrame,
    per: pd.DataFrame,
    campaign_only: bool = False,
) -> Tally:
    """This share's part (`receipts`, `attempts` and `per`: every row of its messages;
    `refusals`: the journal, whole or not)."""
    delivered = _verified(receipts)
    if campaign_only:
        delivered = delivered[delivered["msg_id"] != ""].reset_index(drop=True)
    refused_ids = set(refusals["msg_id"].dropna().astype(str)) if "msg_id" in refusals else set()
    if delivered.empty and not refused_ids:  # the usual run: nothing verified, no path
        delivered["server"] = pd.Series(dtype=object)
        return Tally([_compact(delivered)], {})
    handed = _handed_to(attempts, per)
    delivered["server"] = _text(delivered["msg_id"].map(handed))
    mine = handed[handed.index.isin(list(refused_ids))] if refused_ids else handed.iloc[:0]
    return Tally([_compact(delivered)], {str(k): str(v) for k, v in mine.items()})


KEPT = ("sink", "server", "peer", "helo", *CHECKS)  # a delivered row's text, as categories


def _compact(delivered: pd.DataFrame) -> pd.DataFrame:
    """What `finish` needs of delivered rows: their time, and their text as categories."""
    return pd.DataFrame(
        {"time": delivered["time"], **{c: delivered[c].astype("category") for c in KEPT}}
    )


def finish(
    counted: Tally,
    refusals: pd.DataFrame,
    verifying: Mapping[str, str],
    windows: Sequence[FaultWindow],
    t0: float,
    campaign_only: bool = False,
) -> Auth | None:
    """The `auth` part from every share's `tally` added (see `summarise`)."""
    delivered = tally_mod.joined(counted.delivered)  # the text still as categories
    sinks = dict(verifying)
    for sink in sorted(set(delivered["sink"].unique()) - set(sinks)):
        sinks[sink] = ""  # verdicts journaled, no scenario to say how it enforces
    if not sinks:
        return None
    refused = _enforced(refusals, sinks)
    if campaign_only:
        refused = refused[refused["msg_id"] != ""].reset_index(drop=True)
    refused["server"] = _text(refused["msg_id"].map(pd.Series(counted.handed, dtype=object)))
    auth = Auth(**_counts(delivered, refused))
    auth.sinks = {
        sink: AuthSink(
            enforce=sinks[sink],
            **_counts(delivered[delivered["sink"] == sink], refused[refused["sink"] == sink]),
        )
        for sink in sorted(sinks)
    }
    auth.servers = {
        server or AUTH_UNKNOWN_SERVER: AuthCounts(
            **_counts(
                delivered[delivered["server"] == server], refused[refused["server"] == server]
            )
        )
        for server in sorted(set(delivered["server"].unique()) | set(refused["server"]))
    }
    auth.faults = [
        AuthFault(
            target=w.target,
            kind=w.kind,
            onset_s=round(w.onset - t0, 6),
            cleared_s=None if w.cleared is None else round(w.cleared - t0, 6),
            **_phases(delivered, refused, w),
        )
        for w in windows
    ]
    auth.paths = _paths(delivered, refused, windows)
    return auth


def _verified(receipts: pd.DataFrame) -> pd.DataFrame:
    """The receipts with verdicts: time, sink, msg_id, peer, helo and the four checks.
    The four are written together (sinks.sink._auth_columns): an empty spf is no check."""
    columns = ["time", "sink", "msg_id", "peer", "helo", *CHECKS]
    checked = (
        (receipts["spf"].notna() & (receipts["spf"] != "")).to_numpy()
        if "spf" in receipts
        else None
    )
    if checked is None or not checked.any():  # the usual run: no row to convert
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "time" else object)
                             for c in columns})  # fmt: skip
    frame = receipts[checked].reindex(columns=columns)
    for column in ("sink", "msg_id", "peer", "helo", *CHECKS):
        frame[column] = _text(frame[column])
    return frame.reset_index(drop=True)


def _text(values: pd.Series) -> pd.Series:
    """A text column with "" for what is missing (a column an older journal lacks reads
    as all NaN, of float dtype)."""
    return values.astype(object).where(values.notna(), "").astype(str)


def _enforced(refusals: pd.DataFrame, sinks: Mapping[str, str]) -> pd.DataFrame:
    """The refusals a verifying sink sent for authentication: at the end of DATA, with an
    enhanced code its provider sends (any provider's when the scenario does not say)."""
    columns = ["time", "sink", "msg_id", "peer", "helo", "reply", *CHECKS]
    needed = {"time", "sink", "stage", "code", "enhanced"}
    if refusals.empty or not needed <= set(refusals.columns):
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "time" else object)
                             for c in columns})  # fmt: skip
    sink = refusals["sink"].astype(str)
    enhanced = _text(refusals["enhanced"])
    codes = sink.map(lambda s: _codes(sinks.get(s, "none")))
    ours = (
        sink.isin(list(sinks))
        & (refusals["stage"].astype(str) == "dot")
        & pd.Series([e in c for e, c in zip(enhanced, codes, strict=True)], index=sink.index)
    )
    rows = refusals[ours]
    code = rows["code"].map(lambda c: f"{int(c)}" if c == c else "?")
    empty = pd.Series("", index=rows.index)
    return pd.DataFrame({
        "time": rows["time"].astype("float64"),
        "sink": sink[ours],
        **{c: _text(rows.get(c, empty)) for c in ("msg_id", "peer", "helo")},
        "reply": code + " " + enhanced[ours],
        # "" in every check: a journal older than the refusals' verdict columns.
        **{c: _text(rows.get(c, empty)) for c in CHECKS},
    }).reset_index(drop=True)  # fmt: skip


def _codes(enforce: str) -> frozenset[str]:
    """The enhanced codes of a sink's enforcement refusals: its provider's; none for
    `enforce: none`; any provider's when nothing says how it enforces ("")."""
    if not enforce:
        return _ANY_PROVIDER
    return REFUSAL_CODES.get(enforce, frozenset())


def _handed_to(attempts: pd.DataFrame, per: pd.DataFrame) -> pd.Series:
    """Per message id, the server the sender handed it to: the one that said 250, else the
    server of its last attempt (a sink that refused it directly)."""
    if attempts.empty:
        return pd.Series(dtype=object)
    ordered = attempts.sort_values(["attempt", "start"], kind="stable")
    last = ordered.groupby("msg_id", observed=True, sort=False)["server"].last().astype(str)
    if "accepted_by" in per:
        took = per["accepted_by"].dropna().astype(str)
        last = took.combine_first(last)
    return last


def _counts(delivered: pd.DataFrame, refused: pd.DataFrame) -> dict[str, Any]:
    """AuthCounts' fields over these receipts with verdicts and enforcement refusals: the
    verdict tallies and pass shares of every message whose verdicts are known (the
    refusals' too), the rest of the deliveries only."""
    n, m = len(delivered), len(refused)
    judged = refused[refused["spf"] != ""]  # the four are journaled together
    passing = {check: delivered[check] == PASS for check in CHECKS}
    clean = int((passing["dmarc"] & passing["ptr"]).sum())
    counts: dict[str, Any] = {
        "checked": n + m,
        "delivered": n,
        "clean": clean,
        "dmarc_fail": int((delivered["dmarc"] == FAIL).sum()),
        "unauthenticated": int((~passing["spf"] & ~passing["dkim"]).sum()),
        "refused": m,
        "refused_by": _tally(refused["reply"]),
        "clean_share": _share(clean, n + m),
        "with_verdicts": n + len(judged),
        "refused_verdicts": _refused_verdicts(judged),
    }
    for check in CHECKS:
        counts[check] = _tally(delivered[check], judged[check])
        passed = int(passing[check].sum()) + int((judged[check] == PASS).sum())
        counts[f"{check}_pass_share"] = _share(passed, n + len(judged))
    return counts


def _refused_verdicts(judged: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Per reply, the refused messages' verdicts other than pass, per check (the checks
    that did not pass are why the provider refused): {"550 5.7.26": {"spf": {"fail": 3}}}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for reply in _tally(judged["reply"]):
        mine = judged[judged["reply"] == reply]
        failing = {check: _tally(mine[check][mine[check] != PASS]) for check in CHECKS}
        out[reply] = {check: tally for check, tally in failing.items() if tally}
    return out


def _tally(*values: pd.Series) -> dict[str, int]:
    """Counts by value of all of `values`, the most frequent first (ties by name); a
    category no row holds is no value."""
    counts: dict[str, int] = {}
    for series in values:
        for key, count in series.value_counts().items():
            if count:
                counts[str(key)] = counts.get(str(key), 0) + int(count)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, _SHARE_DIGITS) if whole else None


def _phases(delivered: pd.DataFrame, refused: pd.DataFrame, w: FaultWindow) -> dict[str, Any]:
    """AuthPhases' fields: before the onset, from onset to clear, from the clear on."""
    out: dict[str, Any] = {}
    for phase in ("before", "during", "after"):
        out[phase] = AuthCounts(
            **_counts(delivered[_in(delivered, w, phase)], refused[_in(refused, w, phase)])
        )
    return out


def _in(frame: pd.DataFrame, w: FaultWindow, phase: str) -> pd.Series:
    time = frame["time"]
    end = float("inf") if w.cleared is None else w.cleared
    if phase == "before":
        return time < w.onset
    if phase == "during":
        return (time >= w.onset) & (time < end)
    return time >= end


def path_key(server: str, sink: str, peer: str) -> str:
    """A path's key in `auth.paths`: SERVER>SINK@PEER (server "-" when unknown)."""
    return f"{server or AUTH_UNKNOWN_SERVER}>{sink}@{peer}"


def _paths(
    delivered: pd.DataFrame, refused: pd.DataFrame, windows: Sequence[FaultWindow]
) -> dict[str, AuthPath]:
    keys = ["server", "sink", "peer"]
    ways = delivered[keys].drop_duplicates().astype(object)  # by the categories' codes
    seen = pd.concat([ways, refused[keys]], ignore_index=True).drop_duplicates()
    paths: dict[str, AuthPath] = {}
    for server, sink, peer in sorted(seen.itertuples(index=False, name=None)):
        mine_d = delivered[
            (delivered["server"] == server) & (delivered["sink"] == sink)
            & (delivered["peer"] == peer)
        ]  # fmt: skip
        mine_r = refused[
            (refused["server"] == server) & (refused["sink"] == sink) & (refused["peer"] == peer)
        ]
        paths[path_key(server, sink, peer)] = AuthPath(
            server=server,
            sink=sink,
            peer=peer,
            helo=sorted((set(mine_d["helo"].unique()) | set(mine_r["helo"])) - {""}),
            faults=[AuthPhases(**_phases(mine_d, mine_r, w)) for w in windows],
            **_counts(mine_d, mine_r),
        )
    return paths
