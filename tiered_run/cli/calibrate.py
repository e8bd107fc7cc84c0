"""`calibrate`: find the ceilings a workload needs by running it under escalating ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tiered_run.cli.options import (
    DURATION,
    DURATIONS,
    SIZE,
    SIZES,
    check_outputs,
    given,
    print_progress,
    printed_events,
    report_option,
    run_options,
    runner_for,
    stdout_or_error,
    verbose_option,
    with_executor,
    write_report,
)
from tiered_run.errors import UsageError
from tiered_run.host import signals, streams
from tiered_run.host.machine import read_machine
from tiered_run.inputs.config import load_config
from tiered_run.inputs.plan import RunOptions


@click.command(context_settings={"allow_interspersed_args": False})
@run_options
@with_executor
@click.option("--memory-start", type=SIZE, help="First memory ceiling, e.g. 12G.")
@click.option("--memory-max", type=SIZE, help="Largest memory ceiling [the tier's].")
@click.option("--memory-steps", type=SIZES, help="Memory ceilings to try, e.g. 12G,18G,20G.")
@click.option("--timeout-start", type=DURATION, help="First timeout, e.g. 30s.")
@click.option("--timeout-max", type=DURATION, help="Largest timeout [the tier's, or 10 x start].")
@click.option("--timeout-steps", type=DURATIONS, help="Timeouts to try, e.g. 30s,1m,5m.")
@click.option(
    "--factor",
    type=click.FloatRange(1, min_open=True),
    default=1.5,
    show_default=True,
    help="Escalation factor between ceilings.",
)
@click.option(
    "--headroom",
    type=click.FloatRange(min=1),
    default=1.25,
    show_default=True,
    help="Recommended ceiling = what was used x this.",
)
@report_option
@verbose_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def calibrate(
    command: tuple[str, ...],
    config_path: Path | None,
    report_path: str | None,
    verbose: bool,
    memory_start: int | None,
    memory_max: int | None,
    memory_steps: tuple[int, ...] | None,
    timeout_start: float | None,
    timeout_max: float | None,
    timeout_steps: tuple[float, ...] | None,
    factor: float,
    headroom: float,
    executor: str,
    partition: str | None,
    **options: Any,
) -> int:
    """Find the memory and time COMMAND needs: run it under escalating ceilings until it
    passes, then print recommended ceilings as TOML for a tier. With --executor slurm
    each attempt is a Slurm job, and the memory ceilings to try run at the same time.

    \b
    tiered-run calibrate --memory-steps 12G,18G,20G --timeout 15m -- python3 chat.py --test
    """
    from tiered_run.policy.calibration import schedule
    from tiered_run.render.calibration import render_calibration_table
    from tiered_run.render.json import render_dict_json
    from tiered_run.workflows.calibrate import calibrate as run_calibration

    if not command:
        raise UsageError(
            "no command given; put it after --, e.g. tiered-run calibrate -- make test"
        )
    machine = read_machine()
    config = load_config(machine, config_path)
    check_outputs(report_path, reads=[("the config", config.path)])
    if verbose:
        print_progress(f"config: {config.source}")
    runner = runner_for(executor, partition, config, print_progress)
    tier = config.tier(options["tier"])
    memory = schedule(
        "memory",
        memory_start,
        memory_max,
        memory_steps,
        options.pop("memory"),
        factor,
        tier.memory or machine.memory_total,
    )
    timeout = schedule(
        "timeout",
        timeout_start,
        timeout_max,
        timeout_steps,
        options.pop("timeout"),
        factor,
        tier.timeout,
    )
    asked = RunOptions(**given(options))
    with printed_events(verbose) as printer:
        result = run_calibration(
            tuple(command),
            asked,
            config,
            machine,
            memory,
            timeout,
            headroom,
            runner=runner,
            on_progress=print_progress,
            on_event=printer,
        )
    with signals.finishing(result.exit_code):
        write_report(report_path, lambda: render_dict_json(result.to_dict()))
        streams.err(render_calibration_table(result))
        if result.recommendation is not None:
            streams.out(result.recommendation.toml(result.tier))
    return stdout_or_error(result.exit_code, "the recommended ceilings")
