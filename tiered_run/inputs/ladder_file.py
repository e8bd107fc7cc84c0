"""Ladder files: ever heavier steps, each a guarded run under short ceilings, so a machine
is probed step by step instead of overwhelmed at once.

Everything in a file is checked, and every step planned, before the first step runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.config import Config
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.inputs.settings import (
    BadValue,
    Setting,
    Where,
    check_type,
    keys,
    number,
    read_table,
)
from tiered_run.inputs.trust import read_toml
from tiered_run.inputs.units import parse_interval, parse_size, parse_timeout
from tiered_run.model.report import Outcome
from tiered_run.model.spec import RunSpec
from tiered_run.policy.settle import Thresholds

# The settle gate's thresholds: a table of their own (the same names as a run's load and
# pressure ceilings, another meaning: what the host must be under before a step starts),
# read by the same rules as every setting.
SETTLE = (
    Setting(
        "load_max", number(0, 1e6, "4.0"), Where.SETTLE,
        "Wait until the host's 1-minute load average is at most this.",
        toml=(float,), example="4.0",
    ),
    Setting(
        "memory_available_min", parse_size, Where.SETTLE,
        "Wait until at least this much memory is available.",
        toml=(str, int, float), example='"2G"',
    ),
    Setting(
        "pressure_max", number(0, 100, "25"), Where.SETTLE,
        "Wait until PSI some avg10 of cpu, memory and io is at most this, in %.",
        toml=(float,), example="25",
    ),
    Setting(
        "timeout", parse_timeout, Where.SETTLE,
        "Wait at most this long; then the ladder stops as unhealthy.",
        toml=(str, int, float), example='"60s"',
    ),
    Setting(
        "interval", parse_interval, Where.SETTLE, "How often to look at the host while waiting.",
        toml=(str, int, float), example='"1s"',
    ),
)  # fmt: skip
_STEP_SETTINGS = keys(Where.STEP)
DEFAULT_KEYS = frozenset(_STEP_SETTINGS)
STEP_KEYS = DEFAULT_KEYS | {"name", "command", "shell", "expect", "tier"}
TOP_KEYS = frozenset({"name", "tier", "keep_going", "defaults", "settle", "step"})
SETTLE_KEYS = frozenset(s.key for s in SETTLE)
EXPECTABLE = tuple(o.value for o in Outcome if o is not Outcome.INTERRUPTED)


@dataclass(frozen=True)
class Step:
    """One rung: a command, the run options it gets, and the outcome that counts as a pass."""

    index: int
    name: str
    command: tuple[str, ...]
    options: RunOptions
    expect: Outcome = Outcome.EXITED

    @property
    def label(self) -> str:
        return f'step {self.index} "{self.name}"'


@dataclass(frozen=True)
class Ladder:
    source: str
    name: str
    steps: tuple[Step, ...]
    tier: str | None = None
    settle: Thresholds | None = None
    keep_going: bool = False


def load_ladder(path: Path) -> Ladder:
    """Read and check a ladder file; relative step `cwd`s are taken from the file's folder."""
    return parse_ladder(read_toml(path, "ladder file"), str(path), path.resolve().parent)


def parse_ladder(data: dict, source: str, base: Path | None = None) -> Ladder:
    _known(data, TOP_KEYS, source, "", "top level")
    tier = _own(data, "tier", str, '"batch"', source)
    name = _own(data, "name", str, '"nightly"', source) or Path(source).stem
    keep_going = _own(data, "keep_going", bool, "true", source, default=False)
    defaults = _table(data.get("defaults", {}), source, "defaults")
    _known(defaults, DEFAULT_KEYS, source, "defaults", "[defaults]")
    default_values = _values(defaults, source, "defaults", base)
    settle = None
    if "settle" in data:
        settle = _settle(_table(data["settle"], source, "settle"), source)
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise UsageError(
            f'{source}: no steps; add [[step]] tables, e.g. name = "baseline", command = "true"'
        )
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps, start=1):
        step = _step(index, raw, default_values, source, base)
        if any(s.name == step.name for s in steps):
            raise UsageError(f"{source}: {step.label}: name: duplicate step name; rename one")
        steps.append(step)
    return Ladder(source, name, tuple(steps), tier, settle, keep_going)


def plan_ladder(
    ladder: Ladder,
    config: Config,
    machine: Machine,
    backend: str | None = None,
    interval: float | None = None,
    allow_protected_cpus: bool = False,
) -> tuple[RunSpec, ...]:
    """A RunSpec for every step, so a mistake in the last step is found before the first runs.

    `backend` and `interval` come from the command line and hold for every step; None
    leaves the table's default."""
    run_wide = {"backend": backend, "interval": interval}
    if ladder.tier is not None:
        _check_tier(config, ladder.tier, f"{ladder.source}: tier")
    specs = []
    for step in ladder.steps:
        where = f"{ladder.source}: {step.label}"
        if step.options.tier is not None:
            _check_tier(config, step.options.tier, f"{where}: tier")
        options = replace(
            step.options,
            tier=step.options.tier or ladder.tier,
            allow_protected_cpus=allow_protected_cpus,
            **{name: value for name, value in run_wide.items() if value is not None},
        )
        try:
            specs.append(plan_run(step.command, options, config, machine))
        except UsageError as err:
            raise UsageError(f"{where}: {err}", source=ladder.source, key=err.key) from None
    return tuple(specs)


def _check_tier(config: Config, name: str, where: str) -> None:
    try:
        config.tier(name)
    except UsageError as err:
        raise UsageError(f"{where}: {err}", key="tier") from None


def _step(index: int, raw: object, defaults: dict, source: str, base: Path | None) -> Step:
    label = f"step {index}"
    table = _table(raw, source, label)
    name = _own(table, "name", str, '"baseline"', source, label) or label
    where = f'step {index} "{name}"'
    _known(table, STEP_KEYS, source, where, "[[step]]")
    shell = _own(table, "shell", bool, "true", source, where, default=False)
    command = _command(table.get("command"), shell, f"{source}: {where}")
    expect = _own(table, "expect", str, '"memory"', source, where, default="exited")
    if expect not in EXPECTABLE:
        raise UsageError(
            f"{source}: {where}: expect: unknown outcome {expect!r}; use one of "
            + ", ".join(EXPECTABLE)
        )
    tier = _own(table, "tier", str, '"batch"', source, where)
    values = {**defaults, **_values(table, source, where, base)}
    values["env"] = {**defaults.get("env", {}), **values.get("env", {})}
    options = RunOptions(tier=tier, from_file=True, **values)
    return Step(index, name, command, options, Outcome(expect))


def _command(raw: object, shell: bool, where: str) -> tuple[str, ...]:
    if raw is None:
        raise UsageError(f'{where}: missing key command; add e.g. command = "python3 -m pytest"')
    if shell:
        if not isinstance(raw, str) or not raw.strip():
            raise UsageError(f'{where}: command: with shell = true, give one string, e.g. "a | b"')
        return ("/bin/sh", "-c", raw)
    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError as err:
            raise UsageError(f"{where}: command: {err}; fix the quoting") from None
    elif isinstance(raw, list) and all(isinstance(arg, str) for arg in raw):
        argv = list(raw)
    else:
        raise UsageError(f'{where}: command: use a string or a list of strings, e.g. ["make"]')
    if not argv:
        raise UsageError(f'{where}: command: is empty; give a program, e.g. command = "true"')
    return tuple(argv)


def _values(table: dict, source: str, where: str, base: Path | None) -> dict[str, object]:
    """The run settings of a `[defaults]` or `[[step]]` table (other keys are the step's
    own); a relative `cwd` is taken from the file's folder."""
    if base is not None and "cwd" in table:
        table = {**table, "cwd": _from_folder(table["cwd"], base)}
    return _read(table, _STEP_SETTINGS, source, where)


def _from_folder(raw: object, base: Path) -> object:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        return raw  # refused by the setting's own converter
    path = Path(raw).expanduser()
    return raw if path.is_absolute() else str(base / path)


def _settle(table: dict, source: str) -> Thresholds:
    _known(table, SETTLE_KEYS, source, "settle", "[settle]")
    return Thresholds(**_read(table, {s.key: s for s in SETTLE}, source, "settle"))


def _read(table: dict, allowed: dict[str, Setting], source: str, where: str) -> dict[str, object]:
    try:
        return read_table(table, allowed)
    except BadValue as err:
        message = f"{source}: {where}: {err.key}: {err}"
        raise UsageError(message, source=source, key=err.key) from None


def _table(raw: object, source: str, where: str) -> dict:
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: {where}: must be a table, e.g. [{where.split()[0]}]")
    return raw


def _own(
    table: dict, key: str, kind: type, example: str, source: str, where: str = "", default=None
) -> Any:
    """A key of the file's own, not a run setting (the ladder's name, tier and keep_going; a
    step's name, shell, expect and tier); None where not given."""
    raw = table.get(key, default)
    if raw is not None:
        try:
            check_type(raw, (kind,), example)
        except ValueError as err:
            place = f"{where}: {key}" if where else key
            raise UsageError(f"{source}: {place}: {err}", source=source, key=key) from None
    return raw


def _known(table: dict, allowed: frozenset[str], source: str, where: str, what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{source}: {where}: " if where else f"{source}: "
        raise UsageError(
            f"{prefix}unknown key {unknown[0]!r}; allowed in {what}: {', '.join(sorted(allowed))}",
            source=source,
            key=unknown[0],
        )
