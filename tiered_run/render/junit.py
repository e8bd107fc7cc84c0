"""Reports for CI dashboards: JUnit XML, a testcase per run or ladder step.

Breaches and non-zero exits are failures; runs that could not start or were interrupted
are errors, because they say nothing about the workload itself; ladder steps that never
ran are skipped, so CI shows the whole ladder, except the one the host did not settle for,
an error like the unhealthy ladder it ends.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tiered_run.model.report import Outcome, RunReport
from tiered_run.render.run import render_table
from tiered_run.render.text import escape_char, printable

if TYPE_CHECKING:
    from tiered_run.workflows.ladder import LadderReport

_FAILURES = frozenset(
    {Outcome.EXITED, Outcome.TIMEOUT, Outcome.MEMORY, Outcome.TASKS, Outcome.LOAD, Outcome.SIGNAL}
)
# XML 1.0 cannot carry most control characters, and workload output often has some (ANSI colour).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class _Case:
    """One testcase: passed (`verdict` None), or failure/error/skipped with a message."""

    name: str
    time: float
    verdict: str | None = None
    message: str = ""
    kind: str = ""
    detail: str = ""


def render_junit(
    reports: list[RunReport], suite: str = "tiered-run", names: list[str] | None = None
) -> str:
    """One testsuite with a testcase per run, named by its command unless `names`."""
    if names is not None and len(names) != len(reports):
        raise ValueError(f"got {len(names)} names for {len(reports)} reports")
    cases = []
    for index, report in enumerate(reports):
        name = names[index] if names is not None else shlex.join(report.command)
        passed = report.outcome is Outcome.EXITED and report.exit_code == 0
        cases.append(_judged(name, report, None if passed else report.message))
    return _suite(suite, cases)


def render_ladder_junit(ladder: LadderReport) -> str:
    """A testcase per step, judged by the step's `expect` (a memory breach can be a pass)."""
    cases = []
    for result in ladder.steps:
        report = result.report
        if report is None:
            # The step the host did not settle for stopped the ladder (exit 120): an
            # error, as CI must not show it green; steps after a failure are skipped.
            blocked = result.settle is not None and not result.settle.settled
            verdict, kind = ("error", "unhealthy") if blocked else ("skipped", "")
            cases.append(_Case(result.step.name, 0.0, verdict, result.reason, kind))
            continue
        failed = result.status.value != "passed"
        cases.append(_judged(result.step.name, report, result.reason if failed else None))
    return _suite(ladder.name, cases)


def _judged(name: str, report: RunReport, failure: str | None) -> _Case:
    if failure is None:
        return _Case(name, report.wall_s)
    verdict = "failure" if report.outcome in _FAILURES else "error"
    return _Case(name, report.wall_s, verdict, failure, report.outcome.value, render_table(report))


def _suite(name: str, cases: list[_Case]) -> str:
    root = ET.Element("testsuite", name=_xml_text(name))
    for case in cases:
        element = ET.SubElement(
            root, "testcase", classname="tiered-run", name=_xml_text(case.name),
            time=f"{case.time:.3f}",
        )  # fmt: skip
        if case.verdict is None:
            continue
        detail = ET.SubElement(element, case.verdict, message=_xml_text(case.message))
        if case.kind:
            detail.set("type", case.kind)
        if case.detail:
            detail.text = _xml_text(case.detail)
    for verdict in ("failure", "error", "skipped"):
        count = sum(case.verdict == verdict for case in cases)
        if count or verdict != "skipped":
            root.set(f"{verdict}s" if verdict != "skipped" else "skipped", str(count))
    root.set("tests", str(len(cases)))
    root.set("time", f"{sum(case.time for case in cases):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub(escape_char, printable(text))
