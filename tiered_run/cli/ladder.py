"""`ladder` runs a ladder file; `demo` runs the built-in one to show what the guard does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from tiered_run.cli.options import (
    check_outputs,
    fan_out,
    ladder_options,
    live_status,
    print_progress,
    printed_events,
    recorded,
    runner_for,
    write_output,
    write_report,
    write_summaries,
)
from tiered_run.host import signals, streams
from tiered_run.host.machine import read_machine
from tiered_run.inputs.config import load_config


@click.command()
@click.argument("ladder_file", type=click.Path(dir_okay=False, path_type=Path))
@ladder_options
@click.option("--keep-going", is_flag=True, help="Run every step even after one fails.")
def ladder(ladder_file: Path, keep_going: bool, **options: Any) -> int:
    """Run the steps of LADDER_FILE in order, each under its ceilings, waiting for the host
    to settle before each; stop at the first step that fails.

    \b
    tiered-run ladder examples/conservative-ladder.toml --report ladder.json
    """
    from tiered_run.inputs.ladder_file import load_ladder

    steps = load_ladder(ladder_file)
    return _run_ladder(steps, keep_going, reads=[("the ladder file", ladder_file)], **options)


@click.command()
@ladder_options
def demo(**options: Any) -> int:
    """Show what the guard does on this machine: a built-in ladder of short workloads that
    each meet a ceiling (memory hog, escaping daemon, fork storm, timeout); exit 0 when
    every step ends as expected."""
    from tiered_run.workflows.demo import demo_ladder

    return _run_ladder(demo_ladder(), True, **options)


def _run_ladder(
    steps: Any,
    keep_going: bool,
    config_path: Path | None,
    backend: str | None,
    interval: float | None,
    allow_protected_cpus: bool,
    report_path: str | None,
    junit_path: str | None,
    summary_path: str | None,
    record_history: bool,
    no_new_privileges: bool,
    drop_caps: bool,
    quiet: bool,
    verbose: bool,
    executor: str,
    partition: str | None,
    reads: Sequence[tuple[str, Path]] = (),
) -> int:
    from tiered_run.inputs.ladder_file import plan_ladder
    from tiered_run.render.json import render_dict_json
    from tiered_run.render.junit import render_ladder_junit
    from tiered_run.render.ladder import ladder_headline, render_ladder_table
    from tiered_run.render.markdown import render_ladder_markdown
    from tiered_run.workflows.ladder import run_ladder

    machine = read_machine()
    config = load_config(machine, config_path)
    reads = [*reads, ("the config", config.path)]
    check_outputs(report_path, junit_path, reads=reads, summary_path=summary_path)
    runner = runner_for(executor, partition, config, None if quiet else print_progress)
    if no_new_privileges or drop_caps:
        steps = replace(
            steps,
            steps=tuple(
                replace(
                    step,
                    options=replace(
                        step.options, no_new_privileges=no_new_privileges, drop_caps=drop_caps
                    ),
                )
                for step in steps.steps
            ),
        )
    specs = plan_ladder(steps, config, machine, backend, interval, allow_protected_cpus)
    if verbose:
        print_progress(f"config: {config.source}")
    if runner is not None and steps.settle is not None and not quiet:
        print_progress(
            "[settle] is not applied with --executor slurm: it reads this machine, and Slurm "
            "places the steps on its nodes; each step's report says how its node was"
        )
    # The live line only for steps run here: a Slurm job's samples stay on its node.
    with printed_events(verbose) as printer, live_status(quiet or runner is not None) as status:
        result = run_ladder(
            steps,
            specs,
            keep_going=keep_going,
            runner=runner if status is None else _shown_steps(specs, status),
            on_progress=None if quiet else print_progress,
            on_event=fan_out(printer, status and status.on_event),
            on_settle=status and status.waiting,
        )
    with signals.finishing(result.exit_code):
        if record_history or config.history:
            steps_recorded = tuple(
                replace(step, report=recorded(step.report, True)) if step.report else step
                for step in result.steps
            )
            result = replace(result, steps=steps_recorded)
        write_report(report_path, lambda: render_dict_json(result.to_dict()))
        if junit_path:
            write_output(junit_path, lambda: render_ladder_junit(result), "--junit")
        write_summaries(summary_path, lambda: render_ladder_markdown(result))
        if not quiet:
            streams.err(render_ladder_table(result))
        elif result.exit_code != 0:
            streams.err(ladder_headline(result))
    return result.exit_code


def _shown_steps(specs: Sequence[Any], status: Any) -> Any:
    """The supervisor, with each step's samples and its place in the ladder on the status
    line."""
    from tiered_run.engine.supervisor import run as supervise

    place = {id(spec): index for index, spec in enumerate(specs, 1)}

    def run_step(spec: Any, on_event: Any) -> Any:
        status.start_run(spec, f" step {place.get(id(spec), '?')}/{len(specs)}")
        return supervise(spec, on_event, status.on_sample)

    return run_step
