"""A run's verdict as JUnit XML, where CI systems show test results.

Jenkins (the junit step), GitLab (`artifacts:reports:junit`) and the GitHub actions that
read JUnit all take the same shape, the one pytest's `--junitxml` writes (Jenkins xUnit's
junit-10.xsd): `<testsuites>` holding one `<testsuite>` of `<testcase>`s, each passed,
`<failure message=...>` or `<skipped message=...>`. One suite per run, named after the
scenario, with the run's duration and start (UTC); three groups of cases, by classname:

- `SCENARIO.slo`: one case per SLO rule, named as the scenario wrote it ("lost == 0"); a
  failure carries the measured value, the limit and the check's note. When a fault did not
  start the SLOs are not judged: their cases are skipped.
- `SCENARIO.journals`: one case per journal problem (unreadable lines, lines missing since
  the run ended, a last line torn in a run that finished cleanly), a failure each, since
  the counts from that journal are unverified; or one passing case when there is none.
- `SCENARIO.run`: "drill ran as written": a failure when a fault did not start, or when
  the run was interrupted (its figures cover part of the run).

Built from the Summary alone (`cases` is pure), like the reports. Every text goes through
`xml_text`: ElementTree escapes markup (`<`, `&`, quotes) but writes control characters as
they are, which no XML parser accepts, so a hostile name would make the whole file
unreadable; they are shown as `#xNN` instead (pytest's `bin_xml_escape` does the same).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from loadtest.analysis.summary_model import SloCheck, Summary
from loadtest.analysis.view import exact
from maildrill.paths import write_whole

RAN_AS_WRITTEN = "drill ran as written"
JOURNALS_WHOLE = "every journal line read"

# Characters XML 1.0 forbids (C0 controls but tab, newline and return; lone surrogates;
# U+FFFE, U+FFFF) and those it discourages (DEL, C1 controls): shown, never written raw.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML cannot carry shown as #xNN (#xNNNN)."""
    return _NOT_XML.sub(lambda m: f"#x{ord(m.group()):02X}", text)


@dataclass(frozen=True)
class Case:
    """One test case: passed unless `failure` (or `skipped`) gives its one-line message."""

    classname: str
    name: str
    failure: str | None = None
    kind: str = ""  # the failure's type
    detail: str = ""  # the failure's text, or what a passed case measured
    skipped: str | None = None


def cases(summary: Summary) -> list[Case]:
    """Every case of the run's suite, in order: the SLOs, the journals, the run."""
    scenario = summary.scenario or "run"
    return [
        *_slo_cases(summary, f"{scenario}.slo"),
        *_journal_cases(summary, f"{scenario}.journals"),
        _run_case(summary, f"{scenario}.run"),
    ]


def _slo_cases(summary: Summary, classname: str) -> list[Case]:
    aborted = summary.harness.aborted_by
    out = []
    for check in summary.slo.checks:
        detail = _measured(check)
        if aborted:
            out.append(Case(classname, check.rule, detail=detail,
                            skipped=f"not judged: a fault did not start ({aborted})"))  # fmt: skip
        elif check.passed:
            out.append(Case(classname, check.rule, detail=detail))
        else:
            note = f": {check.note}" if check.note else ""
            message = f"measured {exact(check.value)}, limit {exact(check.limit)}{note}"
            out.append(Case(classname, check.rule, message, "SLO", detail))
    return out


def _measured(check: SloCheck) -> str:
    note = f"\nnote: {check.note}" if check.note else ""
    return f"rule: {check.rule}\nmeasured: {exact(check.value)}\nlimit: {exact(check.limit)}{note}"


def _journal_cases(summary: Summary, classname: str) -> list[Case]:
    problems = summary.journal_problems
    out = []
    for name, bad in problems.unreadable_lines.items():
        more = ", ..." if bad.lines > len(bad.first) else ""
        lines = ", ".join(str(line) for line in bad.first) + more
        out.append(Case(
            classname, f"{name}: unreadable lines",
            f"{bad.lines} unreadable line{'s' * (bad.lines != 1)} (line {lines}) left out: "
            f"the counts from {bad.kind} journals are unverified", "journal",
        ))  # fmt: skip
    for name, cut in problems.missing_lines.items():
        out.append(Case(
            classname, f"{name}: missing lines",
            f"{cut.lines} line{'s' * (cut.lines != 1)} shorter than when the run ended "
            f"(harness.json): the counts from {cut.kind} journals are unverified", "journal",
        ))  # fmt: skip
    if not problems.torn_last_line_trusted:
        for name in problems.torn_last_line:
            out.append(Case(
                classname, f"{name}: torn last line",
                "its last line is torn, yet the run finished cleanly: the file was cut "
                "short and the counts from it are unverified", "journal",
            ))  # fmt: skip
    return out or [Case(classname, JOURNALS_WHOLE)]


def _run_case(summary: Summary, classname: str) -> Case:
    harness = summary.harness
    if harness.aborted_by:
        return Case(classname, RAN_AS_WRITTEN,
                    f"a fault did not start: {harness.aborted_by}", "aborted")  # fmt: skip
    if summary.partial:
        why = harness.interrupted_by
        cause = f"interrupted by {why}" if why else "interrupted or never started"
        return Case(classname, RAN_AS_WRITTEN,
                    f"the run was {cause}: its figures cover part of it", "partial")  # fmt: skip
    return Case(classname, RAN_AS_WRITTEN)


def document(summary: Summary) -> ET.Element:
    """The `<testsuites>` element of the run."""
    found = cases(summary)
    failures = sum(1 for c in found if c.failure is not None)
    skipped = sum(1 for c in found if c.skipped is not None)
    counts = {
        "tests": str(len(found)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{summary.duration_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "maildrill", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": xml_text(summary.scenario or "run")})
    suite.attrib.update(counts)
    if summary.started_at:
        start = dt.datetime.fromtimestamp(summary.started_at, dt.UTC)
        suite.set("timestamp", start.strftime("%Y-%m-%dT%H:%M:%S"))
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(summary).items():
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    for case in found:
        node = ET.SubElement(suite, "testcase")
        node.attrib.update(
            {"classname": xml_text(case.classname), "name": xml_text(case.name), "time": "0"}
        )
        if case.skipped is not None:
            ET.SubElement(node, "skipped", {"message": xml_text(case.skipped)})
        elif case.failure is not None:
            attrs = {"message": xml_text(case.failure), "type": case.kind}
            ET.SubElement(node, "failure", attrs).text = xml_text(case.detail or case.failure)
        if case.detail and case.failure is None:
            ET.SubElement(node, "system-out").text = xml_text(case.detail)
    return root


def _properties(summary: Summary) -> dict[str, str]:
    harness = summary.harness
    given = {
        "run_id": summary.run_id,
        "partial": "true" if summary.partial else "false",
        "interrupted_by": harness.interrupted_by,
        "aborted_by": harness.aborted_by,
    }
    return {name: value for name, value in given.items() if value}


def render(summary: Summary) -> str:
    root = document(summary)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write(path: Path, summary: Summary) -> None:
    """The JUnit file at `path`, whole or not at all (a CI step may read it at once)."""
    write_whole(path, render(summary))


def unwritable(path: Path) -> str | None:
    """Why the JUnit file cannot go to `path` (None: it can), asked before a run starts so
    that a long drill does not end unable to write its verdict. Its directory is made if
    missing (as pytest's --junitxml does); a symbolic link is refused, as `report` refuses
    one where a report goes: the file would land wherever the link points."""
    part = path.with_name(path.name + ".part")  # write_whole writes there first
    for candidate in (path, part):
        if candidate.is_symlink():
            return f"{candidate}: a symbolic link: the JUnit file is not written through one"
    if path.is_dir():
        return f"{path}: a directory: --junit names the file to write"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
        part.unlink()
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror}"
    return None
