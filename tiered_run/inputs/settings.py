"""Every setting a user can give, in one table: its name, how a value is read, where it may
be given, its default, its help, its key in the report and what enforces it.

A ceiling used to live in nine places (the tier record, the run options, two TOML readers,
the click options, the report's keys, the enforcement lists), which drifted apart: two
defaults for the interval, a ladder key its converter did not know, library messages that
named flags to a user who had written TOML keys. Now the click options of `run`,
`calibrate` and `ladder`, the keys of `[tiers.NAME]` and of a ladder's `[defaults]` and
`[[step]]`, the `Tier` and `RunOptions` records, the merge of a tier with overrides, the
report's `limits` and the lists of what the kernel holds are derived from `SETTINGS`. A new
ceiling is one entry here, a field of `model.spec.Limits` (a test keeps the two in step)
and its support in the backends.

A converter takes the command line's text or a TOML value (whose type `read_value` has
checked) and returns the typed value, or raises ValueError with a message that does not
name the setting: the caller names it in the user's own terms, `--memory-high` on the
command line and `memory_high` in a file (`term`).
"""

from __future__ import annotations

import enum
import inspect
import shlex
import signal
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tiered_run.backends import CHOICES
from tiered_run.backends.base import Capability
from tiered_run.inputs.units import (
    format_duration,
    parse_cpus,
    parse_duration,
    parse_interval,
    parse_number,
    parse_signal,
    parse_size,
    parse_timeout,
)
from tiered_run.model.spec import BlockDevice, OnLoad

# The kernel's PID_MAX_LIMIT on 64-bit machines: no tree can hold more tasks, and pids.max
# refuses larger values (which a ladder found only when the step started).
MAX_TASKS = 4_194_304
KILL_AFTER_MAX = 3600.0  # a grace between SIGTERM and SIGKILL longer than an hour is a typo


class Where(enum.Flag):
    """Where a setting may be given."""

    RUN = enum.auto()  # an option of `run` and `calibrate`
    LADDER = enum.auto()  # an option of `ladder` and `demo`, for every step
    TIER = enum.auto()  # a key of a config file's [tiers.NAME]
    STEP = enum.auto()  # a key of a ladder file's [defaults] and [[step]]
    SETTLE = enum.auto()  # a key of a ladder file's [settle] (the health gate, not a run)


@dataclass(frozen=True)
class Setting:
    """One setting and everything derived from it."""

    name: str  # the field of Limits, Tier and RunOptions
    convert: Callable[[Any], Any]  # text or a TOML value -> the value; ValueError if bad
    where: Where
    help: str
    default: Any = None
    key: str = ""  # the TOML key and the flag's stem, where not the name (`signal`)
    toml: tuple[type, ...] = (str,)  # the TOML types a file may give (an int serves a float)
    example: str = ""  # a TOML value, for the message when a file gives another type
    metavar: str = ""
    multiple: bool = False  # a repeatable option whose values are combined
    limit: bool = False  # a field of Limits, and a key of the report's `limits`
    unit: str = ""  # the report key's suffix: timeout_s, memory_bytes, pressure_max_pct
    lifts: bool = False  # 0 (`none`, `infinity`) is no ceiling, and lifts the tier's
    kernel: Capability | None = None  # with it, the kernel holds the ceiling
    to_json: Callable[[Any], object] | None = None
    switch: bool = False  # an on/off flag on the command line: --network/--no-network

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def json_key(self) -> str:
        return self.name + (f"_{self.unit}" if self.unit else "")


# -- converters: the command line's text or a TOML value, never naming the setting ---------


def number(low: float, high: float, example: str, whole: bool = False) -> Callable[[Any], Any]:
    """A finite number from `low` to `high` (a whole one with `whole`)."""
    return partial(parse_number, low=low, high=high, example=example, whole=whole)


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string; got {raw!r}")
    return raw


def _boolean(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false; got {raw!r}")
    return raw


def _cpus(raw: str | int | list[object]) -> tuple[int, ...]:
    """A CPU list as text (`0,2-3`), one CPU number, or a TOML array of them."""
    if isinstance(raw, list):
        raw = ",".join(str(cpu) for cpu in raw)
    return parse_cpus(raw)


def _choice(kind: Callable[[str], Any], choices: tuple[str, ...]) -> Callable[[object], Any]:
    def convert(raw: object) -> Any:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {raw!r}")
        return kind(raw)  # type: ignore[arg-type]

    return convert


def _directory(raw: object) -> Path:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise ValueError(f'expected a path, e.g. "build"; got {raw!r}')
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; create it or fix the path")
    return path


def _environment(raw: object) -> dict[str, str]:
    """One `KEY=VALUE` of the command line, or a TOML table of strings."""
    if isinstance(raw, str):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, e.g. LANG=C; got {raw!r}")
        return {key: value}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError('expected a table of strings, e.g. { LANG = "C" }')
    return dict(raw)


RUNTIMES = ("auto", "podman", "docker")


def _image(raw: object) -> str:
    """An image reference as the runtime takes it; one that could be read as an option or
    holds whitespace is refused here, not by the runtime after the run started."""
    text = _text(raw)
    if not text or text.startswith("-") or any(c.isspace() or c == "\0" for c in text):
        raise ValueError(f'expected an image, e.g. "debian:12"; got {raw!r}')
    return text


def _names(raw: object) -> tuple[str, ...]:
    return tuple(_text(raw).split(","))


PLACEHOLDERS = ("pid", "cgroup")


def _hook(raw: object) -> tuple[str, ...]:
    """A command line split as a shell would (quotes, no pipes: run without a shell; give
    `sh -c '...'` for one), whose `{...}` are only the placeholders it knows."""
    text = _text(raw)
    try:
        argv = tuple(shlex.split(text))
    except ValueError as err:
        raise ValueError(f"cannot split {text!r} into arguments ({err})") from None
    if not argv:
        raise ValueError("expected a command, e.g. 'py-spy dump --pid {pid}'")
    for arg in argv:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
        except ValueError as err:
            raise ValueError(f"{arg!r}: {err}; write {{{{ and }}}} for braces") from None
        if unknown := names - set(PLACEHOLDERS):
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}} in {arg!r}; "
                "use {pid} or {cgroup} (write {{ and }} for braces)"
            )
    return argv


def _signal_name(number: int) -> str:
    return signal.Signals(number).name


MAX_QUOTA_PCT = 100_000.0  # a thousand CPUs' worth: more is a typo


def _percent(raw: object) -> float:
    """A CPU quota in percent of one CPU, as systemd's CPUQuota=: `50%`, `400%`, or the
    number alone."""
    text = raw.strip().removesuffix("%").strip() if isinstance(raw, str) else raw
    return parse_number(text, low=1, high=MAX_QUOTA_PCT, example='"400%"')  # type: ignore[arg-type]


def _rate(raw: object) -> int:
    """Bytes per second: a size (`10M`), with or without `/s`; `none` lifts it."""
    text = raw.strip().removesuffix("/s") if isinstance(raw, str) else raw
    return parse_size(text, ceiling=True)  # type: ignore[arg-type]


def _device_spec(device: BlockDevice) -> str:
    return device.spec  # the report's `io_device`: `MAJ:MIN`, as the kernel's files name it


def _device(raw: object) -> BlockDevice:
    """A disk (`/dev/sda`), or a path whose filesystem's disk is meant."""
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise ValueError(f'expected a path, e.g. "/dev/sda" or "/var/tmp"; got {raw!r}')
    from tiered_run.host.blockdev import device_of  # reads sysfs: only where one is given

    return device_of(Path(raw).expanduser())


_CEILING = partial(parse_size, ceiling=True)
_NUMBERS = (str, int, float)
_RUNS = Where.RUN | Where.TIER | Where.STEP

SETTINGS: tuple[Setting, ...] = (
    Setting("tier", _text, Where.RUN, "Tier to run in (see `tiered-run tiers`).", metavar="NAME"),
    Setting(
        "cpus", _cpus, _RUNS, "CPU list overriding the tier's, e.g. 4-19.",
        toml=(str, int, list), example='"4-19"', metavar="LIST", limit=True,
        kernel=Capability.CPUSET,
    ),
    Setting(
        "timeout", parse_timeout, _RUNS,
        "Wall-time ceiling, e.g. 8, 90s, 5min, 1h 30m; 0 = none.",
        toml=_NUMBERS, example='"15m"', metavar="DURATION", limit=True, unit="s", lifts=True,
    ),
    Setting(
        "kill_after", partial(parse_duration, maximum=KILL_AFTER_MAX), _RUNS,
        "Grace between the ending signal and SIGKILL.",
        default=2.0, toml=_NUMBERS, example='"5s"', metavar="DURATION", limit=True, unit="s",
    ),
    Setting(
        "stop_signal", parse_signal, _RUNS,
        "First signal of a graceful end, as `timeout -s`; INT lets pytest print its summary.",
        default=signal.SIGTERM, key="signal", toml=(str, int), example='"INT"',
        metavar="SIGNAL", limit=True, to_json=_signal_name,
    ),
    Setting(
        "memory", _CEILING, _RUNS, "Hard memory ceiling for the tree, e.g. 2G; none.",
        toml=_NUMBERS, example='"2G"', metavar="SIZE", limit=True, unit="bytes", lifts=True,
        kernel=Capability.MEMORY_LIMIT,
    ),
    Setting(
        "memory_high", _CEILING, _RUNS, "Soft memory ceiling: warn and throttle.",
        toml=_NUMBERS, example='"1G"', metavar="SIZE", limit=True, unit="bytes", lifts=True,
        kernel=Capability.MEMORY_HIGH,
    ),
    Setting(
        "tasks_max", number(1, MAX_TASKS, "4096", whole=True), _RUNS,
        "Processes and threads of the tree.",
        toml=(int,), example="4096", metavar="N", limit=True, kernel=Capability.TASKS_LIMIT,
    ),
    Setting(
        "load_max", number(0, 1e6, "8"), Where.RUN | Where.STEP, "Host 1-min load ceiling.",
        toml=(float,), example="8.0", metavar="LOAD", limit=True,
    ),
    Setting(
        "pressure_max", number(0, 100, "25"), Where.RUN | Where.STEP,
        "Host PSI some-avg10 ceiling, %.",
        toml=(float,), example="25", metavar="PERCENT", limit=True, unit="pct",
    ),
    Setting(
        "on_load", _choice(OnLoad, tuple(o.value for o in OnLoad)), Where.RUN | Where.STEP,
        "On a host load/pressure breach: warn, pause the tree, or kill it.",
        default=OnLoad.WARN, example='"pause"', metavar="warn|pause|kill", limit=True,
    ),
    # Applied by every backend, in the child before exec (setpriority).
    Setting(
        "nice", number(-20, 19, "5", whole=True), _RUNS, "Scheduling niceness.",
        toml=(int,), example="5", metavar="N", limit=True,
    ),
    # The kernel's CPU and I/O controllers (systemd's CPUWeight=, CPUQuota=, IOWeight=,
    # IO*BandwidthMax=, IO*IOPSMax=, MemoryLow=): where a backend has no controller for one,
    # nothing else can hold it, and the report says it was not applied.
    Setting(
        "cpu_weight", number(1, 10000, "100", whole=True), _RUNS,
        "CPU weight against the run's siblings, 1-10000 (100: the default).",
        toml=(int,), example="100", metavar="N", limit=True, kernel=Capability.CPU_WEIGHT,
    ),
    Setting(
        "cpu_quota", _percent, _RUNS,
        "CPU time ceiling in percent of one CPU, e.g. 400% (four CPUs' worth).",
        toml=_NUMBERS, example='"400%"', metavar="PERCENT", limit=True, unit="pct",
        kernel=Capability.CPU_QUOTA,
    ),
    Setting(
        "io_weight", number(1, 10000, "100", whole=True), _RUNS,
        "I/O weight against the run's siblings, 1-10000, where the disk's scheduler honours it.",
        toml=(int,), example="100", metavar="N", limit=True, kernel=Capability.IO_WEIGHT,
    ),
    Setting(
        "io_read_max", _rate, _RUNS, "Read ceiling on the I/O device, bytes/s, e.g. 50M.",
        toml=_NUMBERS, example='"50M"', metavar="SIZE/s", limit=True, unit="bytes_per_s",
        lifts=True, kernel=Capability.IO_LIMIT,
    ),
    Setting(
        "io_write_max", _rate, _RUNS, "Write ceiling on the I/O device, bytes/s, e.g. 10M.",
        toml=_NUMBERS, example='"10M"', metavar="SIZE/s", limit=True, unit="bytes_per_s",
        lifts=True, kernel=Capability.IO_LIMIT,
    ),
    Setting(
        "io_read_iops_max", number(1, 1e9, "1000", whole=True), _RUNS,
        "Read operations per second on the I/O device.",
        toml=(int,), example="1000", metavar="N", limit=True, kernel=Capability.IO_LIMIT,
    ),
    Setting(
        "io_write_iops_max", number(1, 1e9, "1000", whole=True), _RUNS,
        "Write operations per second on the I/O device.",
        toml=(int,), example="1000", metavar="N", limit=True, kernel=Capability.IO_LIMIT,
    ),
    Setting(
        "io_device", _device, _RUNS,
        "Disk of the I/O ceilings, or a path on it; default: the working directory's.",
        example='"/var/tmp"', metavar="PATH", limit=True, to_json=_device_spec,
    ),
    Setting(
        "memory_low", _CEILING, _RUNS,
        "Memory the kernel leaves the tree while others have reclaimable memory.",
        toml=_NUMBERS, example='"2G"', metavar="SIZE", limit=True, unit="bytes", lifts=True,
        kernel=Capability.MEMORY_LOW,
    ),
    Setting(
        "user", _text, _RUNS,
        "Run as this account with a clean login environment, like `su - NAME` (root).",
        example='"builder"', metavar="NAME|UID",
    ),
    Setting(
        "preserve_env", _names, Where.RUN,
        "With --user: copy these variables from our environment (repeatable).",
        default=(), metavar="NAME,...", multiple=True,
    ),
    Setting(
        "protected", _boolean, Where.TIER, "No workload may run on this tier's CPUs.",
        default=False, toml=(bool,), example="true",
    ),
    Setting(
        "description", _text, Where.TIER, "What the tier is for, shown by `tiered-run tiers`.",
        default="", example='"heavy workloads"',
    ),
    Setting(
        "cwd", _directory, Where.RUN | Where.STEP, "Working directory of the workload.",
        example='"build"', metavar="DIR",
    ),
    Setting(
        "env", _environment, Where.RUN | Where.STEP, "KEY=VALUE, repeatable.",
        default=MappingProxyType({}), toml=(dict,), example='{ LANG = "C" }',
        metavar="KEY=VALUE", multiple=True,
    ),
    # A container made inside the run's cgroups (engine.container), and the private /tmp
    # and /dev/shm a run may have without one.
    Setting(
        "container", _image, Where.RUN | Where.STEP,
        "Run COMMAND in a container of IMAGE, inside the run's cgroups and ceilings.",
        example='"debian:12"', metavar="IMAGE",
    ),
    Setting(
        "runtime", _choice(str, RUNTIMES), Where.RUN | Where.STEP,
        f"Container runtime for --container: {', '.join(RUNTIMES)}.",
        default="auto", example='"podman"', metavar="NAME",
    ),
    Setting(
        "network", _boolean, Where.RUN | Where.STEP,
        "Give the container the host's network (default: none).",
        default=False, toml=(bool,), example="true", switch=True,
    ),
    Setting(
        "mount_cwd", _boolean, Where.RUN | Where.STEP,
        "Mount the working directory into the container at the same path.",
        default=True, toml=(bool,), example="false", switch=True,
    ),
    Setting(
        "private_tmp", _boolean, _RUNS,
        "A private /tmp and /dev/shm for the workload, gone with the run (also without "
        "a container).",
        default=False, toml=(bool,), example="true", switch=True,
    ),
    Setting(
        "before_kill", _hook, Where.RUN,
        "At a breach of a ceiling or the timeout, run CMD before the first signal (at most "
        "5 s), e.g. 'py-spy dump --pid {pid}'; {cgroup} is the run's cgroup.",
        metavar="CMD",
    ),
    Setting(
        "backend", _choice(str, CHOICES), Where.RUN | Where.LADDER,
        f"Containment backend: {', '.join(CHOICES)}.", default="auto", metavar="NAME",
    ),
    Setting(
        "interval", parse_interval, Where.RUN | Where.LADDER,
        "Monitor sampling period (up to 1 s while a run the kernel holds is steady).",
        default=0.25, metavar="DURATION", unit="s",
    ),
)  # fmt: skip

SETTING: Mapping[str, Setting] = MappingProxyType({s.name: s for s in SETTINGS})
LIMITS = tuple(s for s in SETTINGS if s.limit)
DEFAULT_INTERVAL: float = SETTING["interval"].default


def keys(place: Where) -> dict[str, Setting]:
    """The settings a file may give at `place`, by their TOML key."""
    return {s.key: s for s in SETTINGS if place in s.where}


def term(name: str, from_file: bool) -> str:
    """A setting as the user wrote it: its key in a file, its flag on the command line."""
    setting = SETTING[name]
    in_files = Where.TIER | Where.STEP
    return setting.key if from_file and setting.where & in_files else setting.flag


def shown(setting: Setting, value: Any) -> str:
    """A value as a user would type it: `2 s`, `TERM`, `warn`."""
    if setting.unit == "s":
        return format_duration(value)
    if isinstance(setting.default, signal.Signals) and isinstance(value, int):
        value = signal.Signals(value)  # kept as a number in a run's limits
    if isinstance(value, signal.Signals):
        return value.name.removeprefix("SIG")
    return str(value.value if isinstance(value, enum.Enum) else value)


# -- reading TOML values -----------------------------------------------------------------

_TYPE_NAMES = {
    str: "string",
    int: "int",
    float: "number",
    bool: "bool",
    list: "list",
    dict: "table",
}


def check_type(raw: object, types: tuple[type, ...], example: str) -> None:
    """TOML values are typed: take them as they are, never coerce (`"false"` is not false,
    `"5"` is not 5). An int serves where a number is asked for."""
    kind = type(raw)
    if kind in types or (kind is int and float in types):
        return
    if kind is bool:
        raise ValueError(f"expected a value, e.g. {example}; got {str(raw).lower()}")
    names = " or ".join(_TYPE_NAMES[t] for t in types if not (t is int and float in types))
    raise ValueError(f"expected {names}, e.g. {example}; got {raw!r}")


def read_value(setting: Setting, raw: object) -> Any:
    """A TOML value of `setting`, checked for type, converted and range-checked."""
    check_type(raw, setting.toml, setting.example)
    return setting.convert(raw)


class BadValue(ValueError):
    """A value a file gave for `key` (as the file wrote it) is wrong; the message says how."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def read_table(table: Mapping[str, object], allowed: Mapping[str, Setting]) -> dict[str, Any]:
    """The values of a TOML table's settings by field name; the caller has refused keys
    that `allowed` does not hold. BadValue names the first wrong one."""
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key in allowed:
            try:
                values[allowed[key].name] = read_value(allowed[key], raw)
            except (TypeError, ValueError) as err:
                raise BadValue(key, str(err)) from err
    return values


# -- records and the report, derived from the table ---------------------------------------


def with_settings(place: Where, default: Callable[[Setting], Any]) -> Callable[[type], type]:
    """Add a field for every setting given at `place` to a class about to become a
    dataclass (apply it below `@dataclass`), with `default(setting)` as its default."""

    def add(cls: type) -> type:
        annotations = dict(inspect.get_annotations(cls))
        for setting in SETTINGS:
            if setting.where & place:
                value = default(setting)
                annotations[setting.name] = "Any"
                if isinstance(value, Mapping):
                    setattr(cls, setting.name, field(default_factory=partial(dict, value)))
                else:
                    setattr(cls, setting.name, field(default=value))
        cls.__annotations__ = annotations
        return cls

    return add


def limits_json(limits: object) -> dict[str, object]:
    """The report's `limits`: each ceiling under its key, with its unit (`timeout_s`)."""
    data: dict[str, object] = {}
    for setting in LIMITS:
        value = getattr(limits, setting.name)
        if value is not None and setting.to_json is not None:
            value = setting.to_json(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        data[setting.json_key] = value
    return data
