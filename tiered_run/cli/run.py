"""`run`, the default command, and `tiers`, which shows what a run's --tier can name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tiered_run.cli.options import (
    check_outputs,
    config_option,
    fan_out,
    given,
    history_option,
    junit_option,
    live_status,
    print_progress,
    print_setup,
    print_start,
    printed_events,
    recorded,
    report_option,
    run_options,
    runner_for,
    stdout_or_error,
    summary_option,
    timeline_csv_option,
    verbose_option,
    with_executor,
    write_output,
    write_report,
    write_summaries,
)
from tiered_run.host import signals, streams
from tiered_run.host.machine import read_machine
from tiered_run.inputs.config import load_config
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.inputs.units import format_cpus, format_duration, format_size
from tiered_run.model.report import RunReport, TimelinePoint
from tiered_run.policy.tiers import cpu_list, protected_tiers


@click.command(context_settings={"allow_interspersed_args": False})
@run_options
@with_executor
@click.option("--log", metavar="FILE", help="Also write the output to FILE (or a FIFO, /dev/null).")
@report_option
@junit_option
@summary_option
@history_option
@timeline_csv_option
@click.option(
    "-q", "--quiet", is_flag=True, help="No summary table, only a one-line headline on failure."
)
@verbose_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    command: tuple[str, ...],
    config_path: Path | None,
    report_path: str | None,
    junit_path: str | None,
    summary_path: str | None,
    record_history: bool,
    timeline_csv_path: str | None,
    log: str | None,
    quiet: bool,
    verbose: bool,
    executor: str,
    partition: str | None,
    **options: Any,
) -> int:
    """Run COMMAND (no shell, argv as given) under the tier's ceilings; with --executor
    slurm, as a Slurm job with tiered-run guarding it there."""
    # Each renderer is imported where its output is asked for: a plain run loads none.
    from tiered_run.engine.supervisor import run as supervise
    from tiered_run.render.run import headline, render_table
    from tiered_run.render.text import for_terminal

    machine = read_machine()
    config = load_config(machine, config_path)
    check_outputs(
        report_path,
        junit_path,
        log,
        reads=[("the config", config.path)],
        summary_path=summary_path,
        timeline_csv_path=timeline_csv_path,
    )
    runner = runner_for(executor, partition, config, None if quiet else print_progress)
    asked = RunOptions(**given(options), log=Path(log) if log is not None else None)
    spec = plan_run(tuple(command), asked, config, machine)
    if verbose:
        print_setup(config.source, spec, asked.env)
        if runner is None:
            print_start(spec)
    samples: list[TimelinePoint] = []  # every sample, for --timeline-csv
    with printed_events(verbose) as printer, live_status(quiet) as status:
        on_event = fan_out(printer, status and status.on_event)
        on_sample = fan_out(
            samples.append if timeline_csv_path else None, status and status.on_sample
        )
        if status is not None:
            status.start_run(spec)
        # A Slurm job's samples stay on its node: its report's (thinned) timeline comes back.
        report = supervise(spec, on_event, on_sample) if runner is None else runner(spec, on_event)
    with signals.finishing(report.exit_code):
        report = recorded(report, record_history or config.history)
        if report.before_kill is not None:  # asked for by name: shown even with -q
            streams.err(for_terminal(report.before_kill.framed()))
        if report_path:
            from tiered_run.render.json import render_json

            write_report(report_path, lambda: render_json(report))
        if junit_path:
            from tiered_run.render.junit import render_junit

            write_output(junit_path, lambda: render_junit([report]), "--junit")
        if timeline_csv_path:
            from tiered_run.render.timeline_csv import render_timeline_csv

            points = samples or report.timeline
            write_output(timeline_csv_path, lambda: render_timeline_csv(points), "--timeline-csv")
        write_summaries(summary_path, lambda: _markdown(report))
        if not quiet:
            streams.err(render_table(report))
        elif report.exit_code != 0:
            streams.err(headline(report))
    return report.exit_code


def _markdown(report: RunReport) -> str:
    from tiered_run.render.markdown import render_run_markdown

    return render_run_markdown(report)


@click.command()
@config_option
def tiers(config_path: Path | None) -> int:
    """Show the tiers this machine resolves to."""
    from tabulate import tabulate

    machine = read_machine()
    config = load_config(machine, config_path)
    rows = []
    for tier in config.tiers.values():
        rows.append(
            [
                tier.name + (" *" if tier.name == config.default_tier else ""),
                format_cpus(tier.cpus) if tier.cpus else format_cpus(machine.cpus),
                format_size(tier.memory) if tier.memory else "-",
                tier.tasks_max or "-",
                format_duration(tier.timeout) if tier.timeout else "-",
                "yes" if tier.protected else "",
                tier.description,
            ]
        )
    headers = ["tier", "cpus", "memory", "tasks", "timeout", "protected", "description"]
    streams.out(tabulate(rows, headers=headers, disable_numparse=True) + "\n")
    owners = protected_tiers(config.tiers)
    notes = []
    for tier in config.tiers.values():
        taken = [] if tier.protected else sorted(set(tier.cpus or ()) & set(owners))
        if taken:
            keeper = ", ".join(sorted({repr(owners[cpu]) for cpu in taken}))
            notes.append(
                f"{tier.name}: {cpu_list(taken)} kept by protected tier {keeper}; "
                "runs there are refused without --allow-protected-cpus\n"
            )
    if notes:
        streams.out("\n" + "".join(notes))
    streams.out(
        f"\nfrom {config.source}; * = default tier; this machine: CPUs "
        f"{format_cpus(machine.cpus)}, {format_size(machine.memory_total)} memory\n"
    )
    return stdout_or_error(0, "the tiers")
