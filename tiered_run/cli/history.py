"""`history`: what the local history (`--history`) holds, and which way it goes."""

from __future__ import annotations

import click

from tiered_run.cli.options import stdout_or_error
from tiered_run.errors import UsageError
from tiered_run.host import streams


@click.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--last",
    type=click.IntRange(1, 10000),
    default=10,
    show_default=True,
    help="How many recent runs of each command.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def history(command: tuple[str, ...], last: int, as_json: bool) -> int:
    """Show the recorded runs of COMMAND (argv as it was run) with their peak memory, wall
    time and outcome, and the trend over them; without COMMAND, one line a command.
    Runs are recorded with --history, or history = true in the config.

    \b
    tiered-run history -- python3 chat.py --test
    """
    from tiered_run.host.history import HistoryError, command_key, latest_runs, runs_of
    from tiered_run.render.history import history_dict, render_commands, render_runs
    from tiered_run.render.json import render_dict_json

    try:
        runs = runs_of(command_key(command), last) if command else latest_runs(last)
    except HistoryError as err:
        raise UsageError(f"history: {err}") from err
    if as_json:
        streams.out(render_dict_json(history_dict(runs)))
    elif command:
        streams.out(render_runs(command_key(command), runs))
    else:
        streams.out(render_commands(runs))
    return stdout_or_error(0, "the history")
