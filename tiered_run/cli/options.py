"""What the commands share: option types and decorators, output checks, and the one-line
messages on stderr, so every command parses, fails and reports alike."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from tiered_run.backends import CHOICES
from tiered_run.errors import UsageError
from tiered_run.host import streams
from tiered_run.host.outputs import OutputKind, check_distinct, check_output, write_atomically
from tiered_run.inputs.identity import LOGIN_NAMES
from tiered_run.inputs.plan import DEFAULT_INTERVAL
from tiered_run.inputs.units import (
    parse_cpus,
    parse_duration,
    parse_interval,
    parse_number,
    parse_signal,
    parse_size,
    parse_timeout,
)
from tiered_run.model.report import Event
from tiered_run.model.spec import OnLoad, RunSpec
from tiered_run.policy.exit_codes import EXIT_TOOL
from tiered_run.policy.tiers import MAX_TASKS

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


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"malformed --env {text!r}: use KEY=VALUE")
    return key, value


def _list_of(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(parse(part) for part in text.split(","))


def _flatten(_ctx: click.Context, _param: click.Parameter, value: Any) -> tuple[str, ...]:
    """A repeatable option of comma lists, as one tuple: `--x A,B --x C` is (A, B, C)."""
    return tuple(item for group in value or () for item in group)


SIZE = _Parsed("size", parse_size)
CEILING = _Parsed("size", functools.partial(parse_size, ceiling=True))
DURATION = _Parsed("duration", parse_duration)
TIMEOUT = _Parsed("duration", parse_timeout)
GRACE = _Parsed("duration", functools.partial(parse_duration, maximum=3600))
INTERVAL = _Parsed("duration", parse_interval)
LOAD = _Parsed("load", functools.partial(parse_number, low=0, high=1e6, example="8"))
PERCENT = _Parsed("percent", functools.partial(parse_number, low=0, high=100, example="25"))
CPUS = _Parsed("cpus", parse_cpus)
ENV = _Parsed("KEY=VALUE", _env_pair)
SIZES = _Parsed("sizes", _list_of(parse_size))
SIGNAL = _Parsed("signal", parse_signal)
DURATIONS = _Parsed("durations", _list_of(parse_duration))

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="Config file."
)
backend_option = click.option(
    "--backend", type=click.Choice(CHOICES), default="auto", show_default=True
)
interval_option = click.option(
    "--interval", type=INTERVAL, default=DEFAULT_INTERVAL, help="Monitor sampling period."
)
allow_protected_option = click.option(
    "--allow-protected-cpus",
    is_flag=True,
    help="Run even on CPUs of a protected tier (said in the report).",
)
cwd_option = click.option(
    "--cwd",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Working directory of the workload.",
)
env_option = click.option(
    "--env", "env_pairs", type=ENV, multiple=True, help="KEY=VALUE, repeatable."
)


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
verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Print monitor events as they happen."
)


def _apply(options: list[Decorator], func: Callable[..., Any]) -> Callable[..., Any]:
    """Apply `options` to `func` so that help lists them in the order given."""
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The tier and ceiling options shared by every command that runs something."""
    options = [
        click.option("--tier", help="Tier to run in (see `tiered-run tiers`)."),
        click.option("--cpus", type=CPUS, help="CPU list overriding the tier's, e.g. 4-19."),
        click.option(
            "--timeout",
            type=TIMEOUT,
            help="Wall-time ceiling, e.g. 8, 90s, 5min, 1h 30m; 0 = none.",
        ),
        click.option(
            "--kill-after", type=GRACE, help="Grace between the ending signal and SIGKILL [2s]."
        ),
        click.option(
            "--signal",
            "stop_signal",
            type=SIGNAL,
            help="First signal of a graceful end, as `timeout -s` [TERM]; INT lets pytest "
            "print its summary.",
        ),
        click.option(
            "--memory", type=CEILING, help="Hard memory ceiling for the tree, e.g. 2G; none."
        ),
        click.option("--memory-high", type=CEILING, help="Soft memory ceiling: warn and throttle."),
        click.option(
            "--tasks-max", type=click.IntRange(1, MAX_TASKS), help="Processes and threads."
        ),
        click.option("--load-max", type=LOAD, help="Host 1-min load ceiling."),
        click.option("--pressure-max", type=PERCENT, help="Host PSI some-avg10 ceiling, %."),
        click.option(
            "--on-load",
            type=click.Choice([o.value for o in OnLoad]),
            help="On a host load/pressure breach: warn, pause the tree, or kill it [warn].",
        ),
        click.option("--nice", type=click.IntRange(-20, 19), help="Scheduling niceness."),
        click.option(
            "--user",
            metavar="NAME|UID",
            help="Run as this account with a clean login environment, like `su - NAME` (root).",
        ),
        click.option(
            "--preserve-env",
            metavar="NAME,...",
            type=_Parsed("names", lambda text: tuple(text.split(","))),
            multiple=True,
            callback=_flatten,
            help="With --user: copy these variables from our environment (repeatable).",
        ),
        *privilege_options,
        allow_protected_option,
        backend_option,
        interval_option,
        config_option,
    ]
    return _apply(options, func)


def ladder_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `ladder` and `demo`."""
    options = [
        config_option,
        backend_option,
        interval_option,
        allow_protected_option,
        report_option,
        junit_option,
        *privilege_options,
        click.option("-q", "--quiet", is_flag=True, help="No table, only a headline on failure."),
        verbose_option,
    ]
    return _apply(options, func)


def check_outputs(
    report_path: str | None, junit_path: str | None = None, log_path: str | None = None
) -> None:
    """Check the --report, --junit and --log files before anything runs, each on its own
    and then against each other: on one file, one would replace the other."""
    check_output(report_path, "--report")
    check_output(junit_path, "--junit")
    check_output(log_path, "--log", OutputKind.STREAM)
    check_distinct([("--log", log_path), ("--report", report_path), ("--junit", junit_path)])


def write_report(report_path: str | None, render: Callable[[], str]) -> None:
    """Write the JSON report to its file, if one was asked for (`-` is refused up front: the
    workload writes to that stdout). A report that cannot be written after the run is a
    warning: the run's exit code stands."""
    if report_path:
        write_output(Path(report_path), render, "--report")


def write_output(path: str | Path, render: Callable[[], str], option: str) -> None:
    """Write one report file atomically; a failure is a warning, never a new exit code."""
    try:
        write_atomically(Path(path), render(), option)
    except OSError as err:
        streams.err(f"tiered-run: warning: {option} {path}: not written ({err.strerror})")
    except UsageError as err:
        streams.err(f"tiered-run: warning: not written: {err}")


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
