"""Reports as Markdown, for CI pages: GitHub's job summary (`GITHUB_STEP_SUMMARY`) and
`--summary FILE`.

The same rows as the terminal table (`render.run.report_rows`, `render.ladder.step_row`),
so the two never tell different stories. Text from the outside world (a command, a step
name, a message) is made inert: a `|` cannot split a table cell, and `<`, `>` and `&`
cannot become HTML, which GitHub renders.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from tiered_run.inputs.units import format_duration
from tiered_run.model.report import Outcome, RunReport
from tiered_run.render.ladder import step_headers, step_notes, step_row
from tiered_run.render.run import MAX_EVENTS, never_started, report_rows
from tiered_run.render.text import for_terminal, one_line

if TYPE_CHECKING:
    from tiered_run.workflows.ladder import LadderReport

_ESCAPES = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`"})


def render_run_markdown(report: RunReport) -> str:
    """A run as a Markdown section: verdict and command, the table, warnings, events."""
    passed = report.outcome is Outcome.EXITED and report.exit_code == 0
    lines = [
        f"### tiered-run: {'passed' if passed else 'failed'}: {_text(report.message)}",
        "",
        f"{_code(shlex.join(report.command))} in tier {_text(report.tier or 'none')}, "
        f"exit code {report.exit_code}",
        "",
    ]
    if not never_started(report):
        lines += _table(["", ""], [[key, value] for key, value in report_rows(report)])
    if report.warnings:
        lines += ["", *(f"- warning: {_text(one_line(w))}" for w in report.warnings)]
    lines += _events(report)
    return "\n".join(lines) + "\n"


def render_ladder_markdown(ladder: LadderReport) -> str:
    """A ladder as a Markdown section: its verdict, a row per step, why steps failed."""
    show_expect = any(r.step.expect is not Outcome.EXITED for r in ladder.steps)
    lines = [
        f"### tiered-run: ladder {_text(ladder.name)} {ladder.outcome.value}",
        "",
        f"{_text(one_line(ladder.message))} (exit code {ladder.exit_code}, "
        f"{format_duration(ladder.wall_s)})",
        "",
        *_table(step_headers(show_expect), [step_row(r, show_expect) for r in ladder.steps]),
    ]
    notes = step_notes(ladder)
    if notes:
        lines += ["", *(f"- {_text(note)}" for note in notes)]
    return "\n".join(lines) + "\n"


def _events(report: RunReport) -> list[str]:
    if not report.events:
        return []
    shown = [
        f"- +{event.t:.2f} s {event.kind}: {_text(one_line(event.message))}"
        for event in report.events[:MAX_EVENTS]
    ]
    if len(report.events) > MAX_EVENTS:
        shown.append(f"- ... {len(report.events) - MAX_EVENTS} more")
    count = len(report.events)
    return ["", f"<details><summary>events ({count})</summary>", "", *shown, "", "</details>"]


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(_text(h) for h in headers) + " |"]
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(_text(str(cell)) for cell in row) + " |" for row in rows]
    return lines


def _text(text: str) -> str:
    """Outside text made inert in Markdown and HTML, on one line."""
    return one_line(for_terminal(text)).translate(_ESCAPES)


def _code(text: str) -> str:
    """`text` as a Markdown code span, shown as it is: fenced by one backtick more than
    the longest run of backticks in it (CommonMark's rule), padded where it starts or
    ends with one."""
    text = one_line(for_terminal(text))
    runs = re.findall("`+", text)
    fence = "`" * (max((len(run) for run in runs), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
