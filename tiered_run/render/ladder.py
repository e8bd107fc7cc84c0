"""A ladder report for people: one row per step, then why steps failed, then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiered_run.inputs.units import format_duration
from tiered_run.model.report import Outcome
from tiered_run.render.run import io_of, peak_of, tasks_cell
from tiered_run.render.text import for_terminal, one_line, truncate

if TYPE_CHECKING:
    from tiered_run.workflows.ladder import LadderReport, StepResult


def render_ladder_table(ladder: LadderReport) -> str:
    """One row per step (what it did to the host included), then why steps failed or did
    not run, and the ladder's own headline last, where the eye lands."""
    from tabulate import tabulate

    show_expect = any(r.step.expect is not Outcome.EXITED for r in ladder.steps)
    rows = [step_row(result, show_expect) for result in ladder.steps]
    notes = [f"  {note}" for note in step_notes(ladder)]
    lines = [tabulate(rows, headers=step_headers(show_expect), disable_numparse=True)]
    if notes:
        lines += ["", *notes]
    lines += ["", ladder_headline(ladder)]
    return for_terminal("\n".join(lines) + "\n")


def step_headers(show_expect: bool) -> list[str]:
    headers = ["#", "step", *(["expect"] if show_expect else []), "result", "outcome", "wall"]
    return [*headers, "peak memory", "peak tasks", "I/O read / written", "leftovers", "host load"]


def step_row(result: StepResult, show_expect: bool) -> list[object]:
    """A step's cells under `step_headers`: what it did, and what it did to the host."""
    report, step = result.report, result.step
    before, after = result.host_before, result.host_after
    return [
        step.index,
        truncate(step.name, 28),
        *([step.expect.value] if show_expect else []),
        result.status.value.replace("_", " "),
        "-" if report is None else f"{report.outcome.value} ({report.exit_code})",
        "-" if report is None else format_duration(report.wall_s),
        "-" if report is None else peak_of(report),
        "-" if report is None else tasks_cell(report).replace(" of ", " / "),
        "-" if report is None else io_of(report),
        "-" if report is None else report.leftover_killed,
        "-" if before is None or after is None else f"{before.load1:.2f} -> {after.load1:.2f}",
    ]


def step_notes(ladder: LadderReport) -> list[str]:
    """Why steps failed or did not run, and what a passing step did that is worth a word."""
    notes = []
    for result in ladder.steps:
        step, report = result.step, result.report
        notable = step.expect is not Outcome.EXITED or (report and report.leftover_killed)
        if result.reason and (result.status.value != "passed" or notable):
            notes.append(f"{step.label}: {one_line(result.reason)}")
    return notes


def ladder_headline(ladder: LadderReport) -> str:
    """How the ladder ended, in one line; what `-q` prints on failure."""
    return for_terminal(
        f"tiered-run: ladder {ladder.name} {ladder.outcome.value} in"
        f" {format_duration(ladder.wall_s)}, exit code {ladder.exit_code}:"
        f" {one_line(ladder.message)}"
    )
