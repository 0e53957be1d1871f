"""A run directory, read once: every file the analysis needs, checked, in one typed value.

`RunDir.load` does all the reading (run.json, harness.json, scenario.yaml, preflight.json,
the journals and the probe journals); `loadtest.analysis.summary.summarise` then builds the
summary from it without touching a file, and the reports render from it. A file that is
there but damaged stops the load with `RunDirError` (or `ScenarioError`) naming it, in the
order a reader meets them: run.json, harness.json and the journals, then scenario.yaml,
then the probes and preflight.json.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from loadtest.analysis import in_child, msg_keys, partitions
from loadtest.analysis import journals as journals_mod
from loadtest.analysis import probes as probes_mod
from loadtest.analysis.bounces import split_suppressed
from loadtest.analysis.journals import PATTERNS, Damage, Journals
from loadtest.analysis.rundir import (
    EXTERNAL,
    HARNESS,
    PREFLIGHT,
    RunDirError,
    read_json,
    read_scenario,
)
from loadtest.analysis.summary_model import Harness, Preflight
from loadtest.fault_event import DNS_TARGET
from loadtest.scenario import Scenario
from maildrill.dns.files import ZONE_DIR
from maildrill.inputs import describe_errors

# Text columns with a handful of values that the whole analysis compares and groups on.
CATEGORIES = ("outcome", "server", "worker")
# Text columns of few values that the analysis only compares, or turns into text first
# (`astype(str)`, `fillna` then `astype(str)`): as categories a million attempts hold 1 MB
# each instead of 8 (issue 18). Only a column without a missing cell becomes one, so a
# `fillna` meets nothing to fill (a category it does not know would be an error).
# journals.load reads them so from the start; `compact` makes them so in frames built
# otherwise (and in journals of several files with different columns).
FEW_VALUES = tuple(c for c in journals_mod.CATEGORIES["attempts"] if c not in CATEGORIES)
# The same for the receipts: columns only compared or grouped on (sink, outcome, helo),
# or made text first (auth._text, received._text, the sessions' series), or not read at
# all (worker).
RECEIPT_FEW_VALUES = journals_mod.CATEGORIES["receipts"]

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class RunRecord:
    """run.json: written by the Locust master when the campaign starts."""

    run_id: str = ""
    planned: int = 0  # 0: unknown (the scenario's schedule says)
    scenario: str = ""  # only in run directories maildrill did not write


@dataclass(frozen=True)
class Share:
    """A share of a run's messages: `journals` with every attempt and receipt of these
    messages and no other, partition `part` of `parts`. The small journals are whole in
    every share: the analyses that count their rows by message take this share's with
    `mine`."""

    journals: Journals
    part: int
    parts: int

    def mine(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a small journal with message ids (a proxy's witnessed receipts, the
        refusals) of this share's messages."""
        return partitions.mine(frame, self.part, self.parts)


@dataclass(frozen=True)
class RunDir:
    """Everything the analysis reads from a run directory."""

    path: Path
    run: RunRecord
    journals: Journals
    scenario: Scenario | None  # scenario.yaml as run; None without one
    scenario_text: str  # its text, as the report shows it ("" without one)
    harness: Harness  # harness.json without `partial` (empty without one)
    partial: bool  # interrupted, never started, or no harness.json
    finished: bool  # harness.json says the run reached its end (partial: false)
    preflight: Preflight | None  # the pre-flight check's verdict; None without one
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)  # probes*.csv, by time
    probe_damage: dict[str, Damage] = field(default_factory=dict)
    # False: the mail came from a sender that keeps no journal (a platform sending to
    # `maildrill sinks`): only what the sinks and proxies journaled can be measured.
    has_sender_journal: bool = True
    # The servers whose sinks (or proxies) kept a journal here, by file name: one that
    # received nothing still has its empty journals.
    journal_servers: tuple[str, ...] = ()
    # The attempts and receipts dealt by message into partitions on disk (a run too big
    # to hold whole): `journals` then holds none of them, `share` gives them a
    # partition at a time.
    split: partitions.Split | None = None

    @property
    def share_count(self) -> int:
        """How many shares the run's messages come in (`share`): 1 when held whole."""
        return 1 if self.split is None else self.split.parts

    def share(self, part: int) -> Share:
        """Share `part` of the run's messages: all of them (held whole), or partition
        `part` of `split`, as `journals` with that partition's attempts and receipts
        (compact as `compact` makes a run's). Read from disk at each call: a loop over
        the shares lets one go before it asks for the next, so one is held at a time."""
        if self.split is None:
            return Share(self.journals, 0, 1)
        attempts, receipts = self.split.frames(part)
        journals = dataclasses.replace(self.journals, attempts=attempts, receipts=receipts)
        return Share(compact(journals), part, self.split.parts)

    def each_share(self, work: Callable[[int], T]) -> list[T]:
        """`work(part)` of every share, one after the other: of a run read a partition at
        a time, each in a forked child (`in_child`: the memory its frames took is all
        given back after it)."""
        if self.split is None:
            return [work(part) for part in range(self.share_count)]
        return [in_child.call(functools.partial(work, part)) for part in range(self.share_count)]

    @classmethod
    def load(cls, path: Path, split: partitions.Split | None = None) -> RunDir:
        """Read and check a run directory; RunDirError or ScenarioError names what is
        damaged. Nothing is written. With `split` (its attempts and receipts dealt into
        partitions: `partitions.split`), only the other journals are read here."""
        if split is None:
            journals = compact(journals_mod.load(path))
        else:
            journals = journals_mod.load(path, big=False)
            for name, damage in split.damage.items():  # lines cut since the run: kept
                damage.missing = journals.damage.get(name, damage).missing or damage.missing
                journals.damage[name] = damage
        scenario = read_scenario(path)
        scenario_file = path / "scenario.yaml"
        text = scenario_file.read_text(encoding="utf-8") if scenario is not None else ""
        harness_file = path / "harness.json"
        harness = read_json(harness_file, HARNESS) or {}
        probes, probe_damage = probes_mod.load(path)
        preflight_file = path / "preflight.json"
        preflight = read_json(preflight_file, PREFLIGHT)
        return cls(
            path=path,
            run=_run_record(journals.run),
            journals=journals,
            scenario=scenario,
            scenario_text=text,
            harness=checked(
                Harness, {k: v for k, v in harness.items() if k != "partial"}, harness_file
            ),
            partial=bool(harness.get("partial", not harness)),
            finished=harness.get("partial") is False,
            preflight=None
            if preflight is None
            else checked(
                Preflight,
                {key: preflight.get(key) for key in ("ok", "reference", "flags", "notes")},
                preflight_file,
            ),
            probes=probes,
            probe_damage=probe_damage,
            has_sender_journal=has_sender_journal(path, journals.run, harness),
            journal_servers=_journal_servers(path),
            split=split,
        )

    @property
    def t0(self) -> float:
        """When the run started, the origin of every "seconds from run start": run.json's
        campaign start; for another sender, harness.json's (`maildrill sinks`: the fault
        timeline's start); else the first intended send time, or the first journal row."""
        if not self.journals.run.get("t0") and self.harness.t0:
            return float(self.harness.t0)
        return self.journals_t0

    @property
    def journals_t0(self) -> float:
        """`Journals.t0` of the run held whole, also when it is read a partition at a time
        (the split noted the attempts' first intended send time, and the receipts' first
        row, for the journals it holds)."""
        if self.split is None or self.journals.run.get("t0"):
            return self.journals.t0
        if self.split.first_intended == self.split.first_intended:
            return self.split.first_intended
        return self.journals.first_sink_row(self.split.first_received)

    @property
    def writer_may_have_died(self) -> bool:
        """Whether a torn last line can be a writer killed mid-write: in a run interrupted
        (or without a harness record), or one where a sink died or a Locust worker was lost.
        A run that finished cleanly closed every journal whole: a torn line there is a file
        cut short, and counts as an unreadable line (the lines after it are gone)."""
        return bool(self.partial or self.harness.sink_deaths or self.harness.workers_lost)


def has_sender_journal(path: Path, run: dict[str, Any], harness: dict[str, Any]) -> bool:
    """Whether maildrill's sender (Locust) wrote this run's attempts: there is an attempts
    journal, or run.json (Locust started the campaign), or a harness.json of `maildrill
    run` (a run stopped before its first attempt: zero messages, not another sender). A
    `maildrill sinks` directory has none of these, or a harness.json saying "external"."""
    if any(path.glob(PATTERNS["attempts"])) or run:
        return True
    return bool(harness) and harness.get("sender") != EXTERNAL


# Journal files a server's sink (or proxy) writes: KIND-NAME.csv, KIND-NAME-wK.csv for
# worker K of a sink with `processes: N`.
SERVER_JOURNALS = re.compile(r"^(?:receipts|refusals|faults|proxy)-(.+?)(?:-w[0-9]+)?\.csv$")


def _journal_servers(path: Path) -> tuple[str, ...]:
    names = {m[1] for f in path.glob("*.csv") if (m := SERVER_JOURNALS.match(f.name))}
    if (path / ZONE_DIR).is_dir():  # the run served DNS: faults-dns.csv is its server's
        names.discard(DNS_TARGET)  # (a scenario with dns: has no server of that name)
    return tuple(sorted(names))


def _run_record(run: dict[str, Any]) -> RunRecord:
    """run.json's values (their types checked by `rundir.RUN` as it was read)."""
    return RunRecord(
        run_id=str(run.get("run_id", "")),
        planned=int(run.get("planned") or 0),
        scenario=str(run.get("scenario") or ""),
    )


def checked(model: type[Model], data: dict[str, Any], path: Path) -> Model:
    """`data` from `path` as `model`; RunDirError naming the file when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RunDirError(path, describe_errors(exc)) from None


def compact(journals: Journals) -> Journals:
    """The same journals with `outcome`, `server` and `worker` of the attempts as
    categories: every comparison and groupby on them is then integer work, not a million
    string compares; the text columns of few values (FEW_VALUES, RECEIPT_FEW_VALUES) too,
    to hold a byte a row instead of eight. Same results (pandas groups categories by
    observed values, sorted). Rows that are no SMTP attempt (a message not sent: every
    recipient suppressed) go to `suppressed`, so no analysis takes them for attempts.
    Message ids become integer keys shared by the attempts and receipts (`msg_keys`)."""
    attempts, suppressed = split_suppressed(journals.attempts)
    if len(suppressed):
        journals = dataclasses.replace(journals, attempts=attempts, suppressed=suppressed)
    columns = {c: "category" for c in CATEGORIES if c in attempts and len(attempts)}
    columns |= _few_values(attempts, FEW_VALUES)
    columns = {c: t for c, t in columns.items() if attempts[c].dtype != t}  # read so: no copy
    if columns:
        journals = dataclasses.replace(journals, attempts=attempts.astype(columns))
    receipts = journals.receipts
    if few := _few_values(receipts, RECEIPT_FEW_VALUES):
        journals = dataclasses.replace(journals, receipts=receipts.astype(few))
    attempts, receipts = msg_keys.share(journals.attempts, journals.receipts)
    return dataclasses.replace(journals, attempts=attempts, receipts=receipts)


def _few_values(frame: pd.DataFrame, names: tuple[str, ...]) -> dict[str, str]:
    """The columns of `names` to make categories: those in `frame` without a missing cell."""
    if not len(frame):
        return {}
    return {
        c: "category"
        for c in names
        if c in frame and frame[c].dtype != "category" and not frame[c].isna().any()
    }
