"""`ladder` runs a ladder file; `demo` runs the built-in one to show what the guard does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from tiered_run.cli.options import (
    check_outputs,
    ladder_options,
    print_event,
    print_progress,
    usage_errors,
    write_report,
)
from tiered_run.config import load_config
from tiered_run.machine import read_machine


@click.command()
@click.argument("ladder_file", type=click.Path(dir_okay=False, path_type=Path))
@ladder_options
@click.option("--keep-going", is_flag=True, help="Run every step even after one fails.")
def ladder(ladder_file: Path, keep_going: bool, **options: Any) -> None:
    """Run the steps of LADDER_FILE in order, each under its ceilings, waiting for the host
    to settle before each; stop at the first step that fails.

    \b
    tiered-run ladder examples/conservative-ladder.toml --report ladder.json
    """
    from tiered_run.ladder_file import load_ladder

    with usage_errors():
        steps = load_ladder(ladder_file)
    _run_ladder(steps, keep_going, **options)


@click.command()
@ladder_options
def demo(**options: Any) -> None:
    """Show what the guard does on this machine: a built-in ladder of short workloads that
    each meet a ceiling (memory hog, escaping daemon, fork storm, timeout); exit 0 when
    every step ends as expected."""
    from tiered_run.demo import demo_ladder

    _run_ladder(demo_ladder(), True, **options)


def _run_ladder(
    steps: Any,
    keep_going: bool,
    config_path: Path | None,
    backend: str,
    interval: float,
    report_path: str | None,
    junit_path: Path | None,
    quiet: bool,
    verbose: bool,
) -> None:
    from tiered_run.ladder import run_ladder
    from tiered_run.ladder_file import plan_ladder
    from tiered_run.render import (
        ladder_headline,
        render_dict_json,
        render_ladder_junit,
        render_ladder_table,
    )

    with usage_errors():
        check_outputs(report_path, junit_path)
        machine = read_machine()
        config = load_config(machine, config_path)
        specs = plan_ladder(steps, config, machine, backend, interval)
        result = run_ladder(
            steps,
            specs,
            keep_going=keep_going,
            on_progress=None if quiet else print_progress,
            on_event=print_event if verbose else None,
        )
    write_report(report_path, lambda: render_dict_json(result.to_dict()))
    if junit_path:
        junit_path.write_text(render_ladder_junit(result))
    if not quiet:
        click.echo(render_ladder_table(result), err=True, nl=False)
    elif result.exit_code != 0:
        click.echo(ladder_headline(result), err=True)
    sys.exit(result.exit_code)
