"""Throughput, latency, lateness and reply codes from the attempts journal, each as its part
of the summary (loadtest.analysis.summary_model)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis.histograms import Slots
from loadtest.analysis.summary_model import ExactPercentiles, Latency, Percentiles


def percentiles(values: pd.Series) -> ExactPercentiles:
    """Exact p50, p95 and max of values already in milliseconds: for series that need no
    merging across workers or shares (histograms.Slots)."""
    if values.empty:
        return ExactPercentiles(p50=None, p95=None, max=None)
    return ExactPercentiles(
        p50=round(float(np.percentile(values, 50)), 3),
        p95=round(float(np.percentile(values, 95)), 3),
        max=round(float(values.max()), 3),
    )


def _only(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The named columns (those present): filtering a million rows then copies a few
    columns, not every column of the journal."""
    return frame[[c for c in columns if c in frame]]


@dataclass
class Times:
    """Latency, response time and lateness of attempts as HDR counts by slot: added a
    share of the messages at a time (`add`, or `tally.added`), they give the figures of
    all the shares together (the counts of a union are the sums of the counts)."""

    latency: Slots = field(default_factory=Slots)
    latency_by_server: dict[str, Slots] = field(default_factory=dict)
    response_time: Slots = field(default_factory=Slots)
    lateness: Slots = field(default_factory=Slots)

    @classmethod
    def of(cls, attempts: pd.DataFrame) -> Times:
        times = cls()
        times.add(attempts)
        return times

    def add(self, attempts: pd.DataFrame) -> None:
        ok = _only(attempts, "server", "start", "end", "intended")[
            attempts["outcome"] == "accepted"
        ]
        self.latency += Slots.of((ok["end"] - ok["start"]).to_numpy(dtype=float))
        for name, frame in ok.groupby("server", observed=True):
            key = str(name)
            slots = Slots.of((frame["end"] - frame["start"]).to_numpy(dtype=float))
            self.latency_by_server[key] = self.latency_by_server.get(key, Slots()) + slots
        waited = (ok["end"] - ok["intended"]).clip(lower=0)
        self.response_time += Slots.of(waited.to_numpy(dtype=float))
        first = _only(attempts, "intended", "start")[attempts["attempt"] == 1]
        behind = (first["start"] - first["intended"]).clip(lower=0)
        self.lateness += Slots.of(behind.to_numpy(dtype=float))

    def latency_ms(self) -> Latency:
        """Service time (end - start) of accepted attempts, overall and per server."""
        return Latency(
            **self.latency.percentiles_ms(),
            per_server={
                name: Percentiles(**self.latency_by_server[name].percentiles_ms())
                for name in sorted(self.latency_by_server)
            },
        )

    def response_time_ms(self) -> Percentiles:
        """End of the accepted attempt minus the message's intended send time.

        The open-model figure: it includes the wait a stalled server or a failover caused,
        which latency alone would omit (coordinated omission).
        """
        return Percentiles(**self.response_time.percentiles_ms())

    def lateness_ms(self) -> Percentiles:
        """Start minus intended time of first attempts: how far the sender fell behind."""
        return Percentiles(**self.lateness.percentiles_ms())


def errors(attempts: pd.DataFrame) -> dict[str, int]:
    """Failed attempts by '<code> <enhanced>', or by outcome and phase when no reply came."""
    failed = attempts[attempts["outcome"] != "accepted"]
    if failed.empty:
        return {}
    counts = reply_counts(failed)
    return {str(k): int(n) for k, n in zip(counts["reply"], counts["count"], strict=True)}


def reply_key(code: object, enhanced: object, outcome: object, phase: object) -> str:
    """'<code> <enhanced>' for a reply; '<outcome> at <phase>' when no reply came."""
    if isinstance(code, int | float) and code == code and code:  # not NaN, not 0
        return f"{int(code)} {'' if enhanced != enhanced else enhanced or ''}".strip()
    return f"{outcome} at {'?' if phase != phase else phase}"


def reply_counts(attempts: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Attempts counted by reply key (and any `by` columns): columns *by, reply, count,
    sorted by them. Groups on the raw columns first and formats a key only per distinct
    combination: a million attempts cost one groupby, not a million string formats."""
    by = by or []
    raw = ["code", "enhanced", "outcome", "phase"]
    frame = attempts.reindex(columns=[*by, *raw])
    frame["code"] = pd.to_numeric(frame["code"], errors="coerce").fillna(0)
    frame["enhanced"] = frame["enhanced"].fillna("").astype(str)
    frame["phase"] = frame["phase"].fillna("?").astype(str)
    counts = frame.groupby([*by, *raw], dropna=False).size().reset_index(name="count")
    counts["reply"] = [
        reply_key(c, e, o, p)
        for c, e, o, p in zip(
            counts["code"], counts["enhanced"], counts["outcome"], counts["phase"], strict=True
        )
    ]
    return counts.groupby([*by, "reply"], sort=True)["count"].sum().reset_index()


def series(attempts: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Tidy 1 s bins from t0: accepted msgs and MB per server, attempts by outcome."""
    if attempts.empty:
        return pd.DataFrame(columns=["second", "server", "outcome", "attempts", "bytes"])
    frame = attempts.assign(second=np.floor(attempts["end"] - t0).astype(int))
    grouped = frame.groupby(["second", "server", "outcome"])
    return pd.DataFrame({"attempts": grouped.size(), "bytes": grouped["bytes"].sum()}).reset_index()
