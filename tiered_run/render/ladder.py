"""A ladder report for people: one row per step, then why steps failed, then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiered_run.inputs.units import format_duration
from tiered_run.model.report import Outcome
from tiered_run.render.run import io_of, peak_of, tasks_cell
from tiered_run.render.text import for_terminal, one_line, truncate

if TYPE_CHECKING:
    from tiered_run.workflows.ladder import LadderReport


def render_ladder_table(ladder: LadderReport) -> str:
    """One row per step (what it did to the host included), then why steps failed or did
    not run, and the ladder's own headline last, where the eye lands."""
    from tabulate import tabulate

    show_expect = any(r.step.expect is not Outcome.EXITED for r in ladder.steps)
    rows, notes = [], []
    for result in ladder.steps:
        report, step = result.report, result.step
        before, after = result.host_before, result.host_after
        rows.append(
            [
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
                "-"
                if before is None or after is None
                else f"{before.load1:.2f} -> {after.load1:.2f}",
            ]
        )
        notable = step.expect is not Outcome.EXITED or (report and report.leftover_killed)
        if result.reason and (result.status.value != "passed" or notable):
            notes.append(f"  {step.label}: {one_line(result.reason)}")
    headers = ["#", "step", *(["expect"] if show_expect else []), "result", "outcome", "wall"]
    headers += ["peak memory", "peak tasks", "I/O read / written", "leftovers", "host load"]
    lines = [tabulate(rows, headers=headers, disable_numparse=True)]
    if notes:
        lines += ["", *notes]
    lines += ["", ladder_headline(ladder)]
    return for_terminal("\n".join(lines) + "\n")


def ladder_headline(ladder: LadderReport) -> str:
    """How the ladder ended, in one line; what `-q` prints on failure."""
    return for_terminal(
        f"tiered-run: ladder {ladder.name} {ladder.outcome.value} in"
        f" {format_duration(ladder.wall_s)}, exit code {ladder.exit_code}:"
        f" {one_line(ladder.message)}"
    )
