"""The command line: parses options, calls the library, renders results. Nothing else."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tiered_run import __version__
from tiered_run.backends import CHOICES
from tiered_run.config import load_config
from tiered_run.errors import TieredRunError
from tiered_run.machine import read_machine
from tiered_run.plan import DEFAULT_INTERVAL, RunOptions, plan_run
from tiered_run.report import Event
from tiered_run.spec import OnLoad
from tiered_run.units import format_cpus, parse_cpus, parse_duration, parse_size


class _Parsed(click.ParamType):
    """A click type around one of the unit parsers, so errors read like click's own."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


SIZE = _Parsed("size", parse_size)
DURATION = _Parsed("duration", parse_duration)
CPUS = _Parsed("cpus", parse_cpus)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"malformed --env {text!r}: use KEY=VALUE")
    return key, value


ENV = _Parsed("KEY=VALUE", _env_pair)


class DefaultRunGroup(click.Group):
    """`tiered-run [OPTIONS] -- CMD` means `tiered-run run [OPTIONS] -- CMD`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The tier and ceiling options shared by every command that runs something."""
    options = [
        click.option("--tier", help="Tier to run in (see `tiered-run tiers`)."),
        click.option("--cpus", type=CPUS, help="CPU list overriding the tier's, e.g. 4-19."),
        click.option(
            "--timeout", type=DURATION, help="Wall-time ceiling, e.g. 8, 1.5s, 2m; 0 = none."
        ),
        click.option("--kill-after", type=DURATION, help="Grace between SIGTERM and SIGKILL [2s]."),
        click.option("--memory", type=SIZE, help="Hard memory ceiling for the tree, e.g. 2G."),
        click.option("--memory-high", type=SIZE, help="Soft memory ceiling: warn and throttle."),
        click.option("--tasks-max", type=click.IntRange(min=1), help="Processes and threads."),
        click.option("--load-max", type=click.FloatRange(min=0), help="Host 1-min load ceiling."),
        click.option(
            "--pressure-max", type=click.FloatRange(0, 100), help="Host PSI some-avg10 ceiling, %."
        ),
        click.option(
            "--on-load",
            type=click.Choice([o.value for o in OnLoad]),
            help="On a host load/pressure breach: warn, pause the tree, or kill it [warn].",
        ),
        click.option("--nice", type=click.IntRange(-20, 19), help="Scheduling niceness."),
        click.option("--user", help="Run as this user, like `su - NAME` (root only)."),
        click.option("--backend", type=click.Choice(CHOICES), default="auto", show_default=True),
        click.option(
            "--interval", type=DURATION, default=DEFAULT_INTERVAL, help="Monitor sampling period."
        ),
        click.option(
            "--config", "config_path", type=click.Path(path_type=Path), help="Config file."
        ),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


@click.group(cls=DefaultRunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tiered-run")
def main() -> None:
    """Run a workload in a CPU tier under time, memory and task ceilings for its whole
    process tree, kill all of it on a breach, and report what happened.

    \b
    tiered-run --tier batch --timeout 8 --memory 2G -- python3 chat.py --test
    tiered-run tiers
    """


@main.command(context_settings={"allow_interspersed_args": False})
@limit_options
@click.option("--cwd", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--env", "env_pairs", type=ENV, multiple=True, help="KEY=VALUE, repeatable.")
@click.option(
    "--log", type=click.Path(dir_okay=False, path_type=Path), help="Also write output here."
)
@click.option("--report", "report_path", help="Write the JSON report to FILE (- = stdout).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-q", "--quiet", is_flag=True, help="No summary table, only a one-line headline on failure."
)
@click.option("-v", "--verbose", is_flag=True, help="Print monitor events as they happen.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    command: tuple[str, ...],
    config_path: Path | None,
    env_pairs: tuple[tuple[str, str], ...],
    report_path: str | None,
    junit_path: Path | None,
    quiet: bool,
    verbose: bool,
    **options: Any,
) -> None:
    """Run COMMAND (no shell, argv as given) under the tier's ceilings."""
    from tiered_run.render import headline, render_json, render_junit, render_table
    from tiered_run.supervisor import run as supervise

    on_load = options.pop("on_load")
    with _usage_errors():
        machine = read_machine()
        config = load_config(machine, config_path)
        spec = plan_run(
            tuple(command),
            RunOptions(
                **options,
                on_load=OnLoad(on_load) if on_load else None,
                env=dict(env_pairs),
            ),
            config,
            machine,
        )
        report = supervise(spec, on_event=_event_printer if verbose else None)
    if report_path == "-":
        click.echo(render_json(report), nl=False)
    elif report_path:
        Path(report_path).write_text(render_json(report))
    if junit_path:
        junit_path.write_text(render_junit([report]))
    if not quiet:
        click.echo(render_table(report), err=True)
    elif report.exit_code != 0:
        click.echo(headline(report), err=True)
    sys.exit(report.exit_code)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Config file.")
def tiers(config_path: Path | None) -> None:
    """Show the tiers this machine resolves to."""
    from tabulate import tabulate

    from tiered_run.render import format_size

    with _usage_errors():
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
                f"{tier.timeout:g} s" if tier.timeout else "-",
                "yes" if tier.protected else "",
                tier.description,
            ]
        )
    headers = ["tier", "cpus", "memory", "tasks", "timeout", "protected", "description"]
    click.echo(tabulate(rows, headers=headers, disable_numparse=True))
    click.echo(
        f"\nfrom {config.source}; * = default tier; this machine: CPUs "
        f"{format_cpus(machine.cpus)}, {format_size(machine.memory_total)} memory"
    )


def _event_printer(event: Event) -> None:
    click.echo(f"tiered-run: +{event.t:.2f}s {event.kind}: {event.message}", err=True)


class _usage_errors:
    """Turn library errors into one line on stderr and their exit code; never a traceback."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, _tb: object) -> bool:
        if isinstance(err, TieredRunError):
            click.echo(f"tiered-run: error: {err}", err=True)
            sys.exit(err.exit_code)
        return False
