"""Ladder files: ever heavier steps, each a guarded run under short ceilings, so a machine
is probed step by step instead of overwhelmed at once.

Everything in a file is checked, and every step planned, before the first step runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.config import Config, convert_value, ranged
from tiered_run.inputs.plan import DEFAULT_INTERVAL, RunOptions, plan_run
from tiered_run.inputs.trust import read_toml
from tiered_run.inputs.units import parse_interval, parse_size, parse_timeout
from tiered_run.model.report import Outcome
from tiered_run.model.spec import OnLoad, RunSpec
from tiered_run.policy.settle import Thresholds
from tiered_run.policy.tiers import TIER_KEYS

LIMIT_KEYS = (TIER_KEYS - {"protected", "description"}) | {"load_max", "pressure_max", "on_load"}
DEFAULT_KEYS = LIMIT_KEYS | {"cwd", "env"}
STEP_KEYS = DEFAULT_KEYS | {"name", "command", "shell", "expect", "tier"}
TOP_KEYS = frozenset({"name", "tier", "keep_going", "defaults", "settle", "step"})
SETTLE_KEYS = frozenset({"load_max", "memory_available_min", "pressure_max", "timeout", "interval"})
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
    data = read_toml(path, "ladder file")
    return parse_ladder(data, str(path), path.resolve().parent)


def parse_ladder(data: dict, source: str, base: Path | None = None) -> Ladder:
    _known(data, TOP_KEYS, source, "", "top level")
    tier = _typed(data.get("tier"), str, source, "tier", '"batch"')
    name = _typed(data.get("name"), str, source, "name", '"nightly"') or Path(source).stem
    keep_going = _typed(data.get("keep_going", False), bool, source, "keep_going", "true")
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
    backend: str = "auto",
    interval: float = DEFAULT_INTERVAL,
    allow_protected_cpus: bool = False,
) -> tuple[RunSpec, ...]:
    """A RunSpec for every step, so a mistake in the last step is found before the first runs."""
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
            backend=backend,
            interval=interval,
            allow_protected_cpus=allow_protected_cpus,
        )
        try:
            specs.append(plan_run(step.command, options, config, machine))
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
    return tuple(specs)


def _check_tier(config: Config, name: str, where: str) -> None:
    try:
        config.tier(name)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None


def _step(index: int, raw: object, defaults: dict, source: str, base: Path | None) -> Step:
    label = f"step {index}"
    table = _table(raw, source, label)
    name = _typed(table.get("name"), str, source, f"{label}: name", '"baseline"') or label
    where = f'step {index} "{name}"'
    _known(table, STEP_KEYS, source, where, "[[step]]")
    shell = _typed(table.get("shell", False), bool, source, f"{where}: shell", "true")
    command = _command(table.get("command"), shell, f"{source}: {where}")
    expect = _typed(table.get("expect", "exited"), str, source, f"{where}: expect", '"memory"')
    if expect not in EXPECTABLE:
        raise UsageError(
            f"{source}: {where}: expect: unknown outcome {expect!r}; use one of "
            + ", ".join(EXPECTABLE)
        )
    tier = _typed(table.get("tier"), str, source, f"{where}: tier", '"batch"')
    rest = {k: v for k, v in table.items() if k in DEFAULT_KEYS}
    values = {**defaults, **_values(rest, source, where, base)}
    values["env"] = {**defaults.get("env", {}), **values.get("env", {})}
    options = RunOptions(tier=tier, **values)
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
    values: dict[str, object] = {}
    for key, raw in table.items():
        try:
            values[key] = _convert(key, raw, base)
        except (TypeError, ValueError) as err:
            raise UsageError(f"{source}: {where}: {key}: {err}") from None
    return values


def _convert(key: str, raw: object, base: Path | None) -> object:
    """Every key the file format accepts, converted and range-checked as a config file's."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a value, got {str(raw).lower()}")
    if key == "cwd":
        return _directory(raw, base)
    if key in _STEP_CONVERTERS:
        return _STEP_CONVERTERS[key](raw)
    return convert_value(key, raw)  # a tier key: the same rules as in a config file


def _on_load(raw: object) -> OnLoad:
    choices = {o.value for o in OnLoad}
    if raw not in choices:
        raise ValueError(f"expected one of {', '.join(sorted(choices))}; got {raw!r}")
    return OnLoad(raw)


def _env(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError('expected a table of strings, e.g. env = { LANG = "C" }')
    return dict(raw)


def _directory(raw: object, base: Path | None) -> Path:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise ValueError(f'expected a path string, e.g. "build"; got {raw!r}')
    path = Path(raw).expanduser()
    path = path if path.is_absolute() or base is None else base / path
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; create it or fix the path")
    return path


def _text(parse: Callable[[str | float | int], object]) -> Callable[[object], object]:
    """A unit parser for TOML values: strings and numbers, nothing else."""

    def convert(raw: object) -> object:
        if not isinstance(raw, str | int | float):
            raise ValueError(f"expected a string or a number; got {raw!r}")
        return parse(raw)

    return convert


_STEP_CONVERTERS: dict[str, Callable[[object], object]] = {
    "timeout": _text(parse_timeout),  # a step's 0 means no timeout, not the tier's
    "interval": _text(parse_interval),
    "memory_available_min": _text(parse_size),
    "load_max": ranged(float, 0, 1e6, "4.0"),
    "pressure_max": ranged(float, 0, 100, "25"),
    "on_load": _on_load,
    "env": _env,
}


def _settle(table: dict, source: str) -> Thresholds:
    _known(table, SETTLE_KEYS, source, "settle", "[settle]")
    values = _values(table, source, "settle", None)
    return Thresholds(**values)  # type: ignore[arg-type]


def _table(raw: object, source: str, where: str) -> dict:
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: {where}: must be a table, e.g. [{where.split()[0]}]")
    return raw


def _typed(raw: object, kind: type, source: str, where: str, example: str) -> object:
    if raw is not None and type(raw) is not kind:
        raise UsageError(
            f"{source}: {where}: expected {kind.__name__}, e.g. {example}; got {raw!r}"
        )
    return raw


def _known(table: dict, allowed: frozenset[str], source: str, where: str, what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{source}: {where}: " if where else f"{source}: "
        raise UsageError(
            f"{prefix}unknown key {unknown[0]!r}; allowed in {what}: {', '.join(sorted(allowed))}"
        )
