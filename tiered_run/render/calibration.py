"""A calibration report for people: every attempt, then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiered_run.inputs.units import format_duration, format_size
from tiered_run.render.run import headline, never_started, peak_of
from tiered_run.render.text import for_terminal, one_line

if TYPE_CHECKING:
    from tiered_run.workflows.calibrate import CalibrationReport


def render_calibration_table(calibration: CalibrationReport) -> str:
    """Every attempt with its ceilings and what it used, then the verdict; one line when the
    command never started (not found, not executable)."""
    from tabulate import tabulate

    attempts = calibration.attempts
    if len(attempts) == 1 and never_started(attempts[0].report):
        return headline(attempts[0].report) + "\n"

    rows = []
    for attempt in calibration.attempts:
        report = attempt.report
        rows.append(
            [
                attempt.index,
                "-" if attempt.memory is None else format_size(attempt.memory),
                "-" if attempt.timeout is None else format_duration(attempt.timeout),
                f"{report.outcome.value} ({report.exit_code})",
                format_duration(report.wall_s),
                peak_of(report),
            ]
        )
    headers = ["#", "memory", "timeout", "outcome", "wall", "peak memory"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    outcome = calibration.outcome.value
    what = outcome if outcome == "calibrated" else f"calibration {outcome}"
    verdict = f"tiered-run: {what}: {one_line(calibration.message)}"
    return for_terminal(f"{table}\n\n{verdict}\n")
