"""The local history for people: a command's recent runs and their trend, or one line a
command; and the same as JSON for machines."""

from __future__ import annotations

from collections.abc import Sequence

from tiered_run.host.history import Recorded
from tiered_run.inputs.units import format_duration, format_size
from tiered_run.policy.trend import Trend, trend
from tiered_run.render.text import for_terminal, truncate


def trends(runs: Sequence[Recorded]) -> list[Trend]:
    """Peak memory and wall time over `runs`, oldest first."""
    return [
        trend("peak memory", [run.peak_memory_bytes for run in runs]),
        trend("wall time", [run.wall_s for run in runs]),
    ]


def render_runs(command: str, runs: Sequence[Recorded]) -> str:
    """The runs of one command, oldest first, then its trends."""
    from tabulate import tabulate

    if not runs:
        return for_terminal(f"no runs of {command} in the history\n")
    rows = [
        [
            run.started_at.replace("T", " ")[:19],
            f"{run.outcome} ({run.exit_code})",
            format_duration(run.wall_s),
            "-" if run.peak_memory_bytes is None else format_size(run.peak_memory_bytes),
            "-" if run.peak_tasks is None else run.peak_tasks,
            run.tier or "-",
        ]
        for run in runs
    ]
    headers = ["started", "outcome", "wall", "peak memory", "peak tasks", "tier"]
    lines = [f"runs of {command}:", tabulate(rows, headers=headers, disable_numparse=True), ""]
    lines += [item.describe() for item in trends(runs)]
    return for_terminal("\n".join(lines) + "\n")


def render_commands(runs: Sequence[Recorded]) -> str:
    """One line a command: how many recent runs, how the last ended, the trends."""
    from tabulate import tabulate

    if not runs:
        return "the history is empty: run with --history, or history = true in the config\n"
    rows = []
    for command, own in _by_command(runs).items():
        memory, wall = trends(own)
        rows.append(
            [
                truncate(command, 50),
                len(own),
                f"{own[-1].outcome} ({own[-1].exit_code})",
                _change(memory),
                _change(wall),
            ]
        )
    headers = ["command", "runs", "last", "peak memory trend", "wall trend"]
    return for_terminal(tabulate(rows, headers=headers, disable_numparse=True) + "\n")


def history_dict(runs: Sequence[Recorded]) -> dict[str, object]:
    """`history --json`: each command with its runs (oldest first) and trends."""
    return {
        "schema_version": 1,
        "kind": "history",
        "commands": [
            {
                "command": command,
                "runs": [run.to_dict() for run in own],
                "trends": [item.to_dict() for item in trends(own)],
            }
            for command, own in _by_command(runs).items()
        ],
    }


def _by_command(runs: Sequence[Recorded]) -> dict[str, list[Recorded]]:
    grouped: dict[str, list[Recorded]] = {}
    for run in runs:
        grouped.setdefault(run.command, []).append(run)
    return grouped


def _change(item: Trend) -> str:
    return "-" if item.change_pct is None else f"{round(item.change_pct):+d} %"  # no "-0 %"
