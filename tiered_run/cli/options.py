"""What the commands share: option types and decorators (the settings' options derived from
the table in `inputs.settings`), output checks, and the one-line messages on stderr, so
every command parses, fails and reports alike."""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from tiered_run.errors import UsageError
from tiered_run.host import streams
from tiered_run.host.outputs import (
    OutputKind,
    append_text,
    check_distinct,
    check_output,
    write_atomically,
)
from tiered_run.inputs.identity import LOGIN_NAMES
from tiered_run.inputs.settings import SETTINGS, Setting, Where, shown
from tiered_run.inputs.units import parse_duration, parse_size
from tiered_run.model.report import Event, RunReport
from tiered_run.model.spec import RunSpec
from tiered_run.policy.exit_codes import EXIT_TOOL

# GitHub Actions names the job summary file of the step in this variable.
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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


def _list_of(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(parse(part) for part in text.split(","))


SIZE = _Parsed("size", parse_size)
DURATION = _Parsed("duration", parse_duration)
SIZES = _Parsed("sizes", _list_of(parse_size))
DURATIONS = _Parsed("durations", _list_of(parse_duration))

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="Config file."
)
allow_protected_option = click.option(
    "--allow-protected-cpus",
    is_flag=True,
    help="Run even on CPUs of a protected tier (said in the report).",
)


def _combine(_ctx: click.Context, _param: click.Parameter, values: tuple[Any, ...]) -> Any:
    """A repeatable option's values as one: `--env A=1 --env B=2` is {A: 1, B: 2},
    `--preserve-env A,B --preserve-env C` is (A, B, C); None when not given."""
    if not values:
        return None
    if isinstance(values[0], Mapping):
        return {key: value for part in values for key, value in part.items()}
    return tuple(item for part in values for item in part)


def _setting_option(setting: Setting) -> Decorator:
    """The option of one setting of the table: `--memory-high` for memory_high, its help
    with the default, its converter as the type. Not given, it is None: the tier's value
    or the table's default applies later, where the merge is."""
    help_text = setting.help
    if setting.switch:
        stem = setting.flag.removeprefix("--")
        return click.option(f"--{stem}/--no-{stem}", setting.name, default=None, help=help_text)
    if setting.default is not None and setting.default not in ((), "") and not setting.multiple:
        help_text += f" [{shown(setting, setting.default)}]"
    return click.option(
        setting.flag,
        setting.name,
        type=_Parsed(setting.key, setting.convert),
        metavar=setting.metavar,
        multiple=setting.multiple,
        callback=_combine if setting.multiple else None,
        help=help_text,
    )


def setting_options(place: Where) -> list[Decorator]:
    """The options of every setting the table allows at `place`, in the table's order."""
    return [_setting_option(setting) for setting in SETTINGS if place in setting.where]


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given: the rest keep the defaults of the record they fill."""
    return {name: value for name, value in options.items() if value is not None}


def _not_stdout(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """The workload writes to tiered-run's stdout: a report there would be mixed into it."""
    if value == "-":
        raise click.BadParameter(
            "- would mix the JSON report into the workload's own stdout; "
            "give a file, e.g. --report run.json",
            param_hint="'--report'",
        )
    return value


report_option = click.option(
    "--report",
    "report_path",
    metavar="FILE",
    callback=_not_stdout,
    help="Write the JSON report to FILE.",
)
junit_option = click.option(
    "--junit", "junit_path", metavar="FILE", help="Write JUnit XML to FILE."
)
history_option = click.option(
    "--history",
    "record_history",
    is_flag=True,
    help="Record the run in the local history (tiered-run history shows the trend).",
)
summary_option = click.option(
    "--summary",
    "summary_path",
    metavar="FILE",
    help="Write a Markdown summary to FILE (GITHUB_STEP_SUMMARY gets one anyway).",
)
timeline_csv_option = click.option(
    "--timeline-csv",
    "timeline_csv_path",
    metavar="FILE",
    help="Write every sample (time, memory, tasks, CPU, host load) to FILE as CSV.",
)
privilege_options = [
    click.option(
        "--no-new-privileges",
        is_flag=True,
        help="Setuid programs and file capabilities no longer raise the workload's privileges.",
    ),
    click.option(
        "--drop-caps",
        is_flag=True,
        help="Root workload: cannot change its cgroups or limits (drops CAP_SYS_ADMIN & co).",
    ),
]
executor_options = [
    click.option(
        "--executor",
        type=click.Choice(["local", "slurm"]),
        default="local",
        show_default=True,
        help="Where runs happen: here, or each as a Slurm job guarded by tiered-run inside.",
    ),
    click.option(
        "--partition", metavar="NAME", help="With --executor slurm: the partition to use."
    ),
]


def with_executor(func: Callable[..., Any]) -> Callable[..., Any]:
    """--executor and --partition, for the commands that run workloads."""
    return _apply(executor_options, func)


def runner_for(
    executor: str, partition: str | None, config: Any, say: Callable[[str], None] | None
) -> Any:
    """The runner of --executor: None for runs here (the supervisor), a Slurm executor
    that submits each run as a job; refused before anything runs where Slurm is missing."""
    if executor == "local":
        if partition is not None:
            raise UsageError("--partition goes with --executor slurm; add it or drop --partition")
        return None
    from tiered_run.policy.tiers import protected_tiers
    from tiered_run.workflows.slurm import SlurmExecutor, check_slurm

    check_slurm()
    return SlurmExecutor(protected_tiers(config.tiers), partition, say)


verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Print monitor events as they happen."
)


def _apply(options: list[Decorator], func: Callable[..., Any]) -> Callable[..., Any]:
    """Apply `options` to `func` so that help lists them in the order given."""
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings of a run (the table's RUN settings: tier, ceilings, user, cwd, env,
    backend, interval), what the workload gives up, and the config file: the options of
    every command that runs one workload."""
    options = [
        *setting_options(Where.RUN),
        *privilege_options,
        allow_protected_option,
        config_option,
    ]
    return _apply(options, func)


def ladder_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `ladder` and `demo`."""
    options = [
        *executor_options,
        config_option,
        *setting_options(Where.LADDER),
        allow_protected_option,
        report_option,
        junit_option,
        summary_option,
        history_option,
        *privilege_options,
        click.option("-q", "--quiet", is_flag=True, help="No table, only a headline on failure."),
        verbose_option,
    ]
    return _apply(options, func)


def check_outputs(
    report_path: str | None,
    junit_path: str | None = None,
    log_path: str | None = None,
    reads: Sequence[tuple[str, str | Path | None]] = (),
    summary_path: str | None = None,
    timeline_csv_path: str | None = None,
) -> None:
    """Check the --report, --junit, --log and --timeline-csv files before anything runs,
    each on its own, against each other (on one file, one would replace the other) and
    against the files the run reads (`reads`: (what, path), e.g. ("the config", ...))."""
    check_output(report_path, "--report")
    check_output(junit_path, "--junit")
    check_output(log_path, "--log", OutputKind.STREAM)
    check_output(summary_path, "--summary")
    check_output(timeline_csv_path, "--timeline-csv")
    outputs = [
        ("--log", log_path),
        ("--report", report_path),
        ("--junit", junit_path),
        ("--summary", summary_path),
        ("--timeline-csv", timeline_csv_path),
        # The CI job's summary file, appended to at the end: never an input or an output.
        (STEP_SUMMARY, os.environ.get(STEP_SUMMARY) or None),
    ]
    check_distinct(outputs, reads, lenient={STEP_SUMMARY})


def write_report(report_path: str | None, render: Callable[[], str]) -> None:
    """Write the JSON report to its file, if one was asked for (`-` is refused up front: the
    workload writes to that stdout). A report that cannot be written after the run is a
    warning: the run's exit code stands."""
    if report_path:
        write_output(Path(report_path), render, "--report")


def write_output(
    path: str | Path, render: Callable[[], str | bytes], option: str, append: bool = False
) -> None:
    """Write one report file atomically (or append text to it); a failure is a warning,
    never a new exit code."""
    try:
        if append:
            text = render()
            append_text(path, text if isinstance(text, str) else text.decode(), option)
        else:
            write_atomically(Path(path), render(), option)
    except OSError as err:
        streams.err(f"tiered-run: warning: {option} {path}: not written ({err.strerror})")
    except UsageError as err:
        streams.err(f"tiered-run: warning: not written: {err}")


def recorded(report: RunReport, wanted: bool) -> RunReport:
    """`report`, recorded in the local history if `wanted`: a history that cannot take it
    adds a warning to the report, and the run's result stands."""
    if not wanted:
        return report
    from tiered_run.host.history import record

    warning = record(report)
    if warning is None:
        return report
    streams.err(f"tiered-run: warning: {warning}")
    return replace(report, warnings=(*report.warnings, warning))


def write_summaries(summary_path: str | None, render: Callable[[], str]) -> None:
    """The Markdown summary: to --summary FILE (replaced), and appended to the job summary
    of a GitHub Actions step where `GITHUB_STEP_SUMMARY` names one."""
    if summary_path:
        write_output(summary_path, render, "--summary")
    if step_summary := os.environ.get(STEP_SUMMARY):
        write_output(step_summary, render, STEP_SUMMARY, append=True)


@contextmanager
def live_status(quiet: bool) -> Iterator[Any]:
    """The live status line (`cli.status.StatusLine`) where stderr is a terminal a person
    watches: not with -q, not in CI (`CI` set), not on a `TERM=dumb` one; else None, and
    the module is never loaded. Cleared and the terminal given back after, whatever
    happened."""
    if quiet or not _watched_terminal():
        yield None
        return
    from tiered_run.cli.status import StatusLine

    status = StatusLine(color=not os.environ.get("NO_COLOR"))
    try:
        yield status
    finally:
        status.close()


def _watched_terminal() -> bool:
    if os.environ.get("CI") or os.environ.get("TERM", "") in ("", "dumb"):
        return False
    try:
        return os.isatty(2)
    except OSError:
        return False


def fan_out(*callbacks: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """One callback that calls each given one (None: none was given)."""
    present = [callback for callback in callbacks if callback is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return lambda value: [callback(value) for callback in present] and None


@contextmanager
def printed_events(verbose: bool) -> Iterator[EventPrinter | None]:
    """With -v, an EventPrinter for the run's events, closed (its queue printed) after."""
    printer = EventPrinter() if verbose else None
    try:
        yield printer
    finally:
        if printer is not None:
            printer.close()


class EventPrinter:
    """Prints monitor events on stderr from a thread of its own.

    The monitor only puts an event in a queue, which never blocks and never fails, so a
    slow or broken stderr (`2>&1 | true`) cannot stall or kill enforcement.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._print, name="tiered-run-events", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        self._queue.put(event)

    def _print(self) -> None:
        while (event := self._queue.get()) is not None:
            streams.err(f"tiered-run: +{event.t:.2f}s {event.kind}: {event.message}")

    def close(self, wait_s: float = 1.0) -> None:
        """Print what is queued (for at most `wait_s`), then stop."""
        self._queue.put(None)
        self._thread.join(wait_s)


def stdout_or_error(code: int, what: str) -> int:
    """`code`, unless what a command writes to stdout as its product was lost (a full disk,
    not a reader that went away): then one line saying so, and 125."""
    why = streams.lost(streams.STDOUT)
    if why is None:
        return code
    streams.err(f"tiered-run: error: {what} could not be written to stdout ({why})")
    return EXIT_TOOL


def print_progress(message: str) -> None:
    streams.err(f"tiered-run: {message}")


def print_start(spec: RunSpec) -> None:
    """For -v: the run about to start: tier, CPUs, ceilings and the backend that holds them."""
    from tiered_run.backends import choose
    from tiered_run.inputs.units import format_cpus, format_duration, format_size

    limits = spec.limits
    ceilings = [
        f"timeout {format_duration(limits.timeout)}" if limits.timeout else "no timeout",
        f"memory {format_size(limits.memory)}" if limits.memory else "no memory ceiling",
    ]
    if limits.memory_high:
        ceilings.append(f"soft memory {format_size(limits.memory_high)}")
    if limits.tasks_max:
        ceilings.append(f"tasks {limits.tasks_max}")
    if limits.load_max is not None:
        ceilings.append(f"host load {limits.load_max:g} ({limits.on_load.value})")
    choice = choose(spec.backend)  # cached: the run's own choice, not a second probe
    print_progress(
        f"start: tier {spec.tier}, CPUs {format_cpus(limits.cpus)}, {', '.join(ceilings)}; "
        f"backend {choice.backend.name} ({choice.reason})"
    )


def print_setup(config_source: str, spec: RunSpec, extra_env: dict[str, str]) -> None:
    """For -v: which config file was read, which environment a --user workload gets (names
    only: values may be secrets), and what privileges it gives up."""
    print_progress(f"config: {config_source}")
    if spec.user is not None:
        user = spec.user
        login = [name for name in LOGIN_NAMES if name in spec.env]
        line = (
            f"runs as {user.name} (uid {user.uid}, gid {user.gid}) with the environment of "
            f"`su - {user.name}`: {', '.join(login)}"
        )
        if added := sorted(set(spec.env) - set(LOGIN_NAMES)):
            line += f", plus {', '.join(added)}"
        if overridden := sorted(set(extra_env) & set(LOGIN_NAMES)):
            line += f" (--env sets {', '.join(overridden)})"
        print_progress(line)
    given_up = [
        what
        for what, asked in (
            ("no new privileges", spec.privileges.no_new_privileges),
            ("capabilities, cgroup write access and user namespaces", spec.privileges.drop_caps),
        )
        if asked
    ]
    if given_up:
        print_progress(f"the workload gives up: {'; '.join(given_up)}")
