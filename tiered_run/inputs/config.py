"""Finding and reading the TOML configuration of tiers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.trust import read_toml
from tiered_run.inputs.units import (
    parse_cpus,
    parse_duration,
    parse_number,
    parse_size,
    parse_timeout,
)
from tiered_run.policy.tiers import MAX_TASKS, TIER_KEYS, Tier, default_tiers

DEFAULT_TIER = "batch"


@dataclass(frozen=True)
class Config:
    tiers: dict[str, Tier]
    default_tier: str
    source: str

    def tier(self, name: str | None) -> Tier:
        chosen = name or self.default_tier
        if chosen not in self.tiers:
            known = ", ".join(sorted(self.tiers))
            raise UsageError(f"unknown tier {chosen!r} (from {self.source}); known tiers: {known}")
        return self.tiers[chosen]


def candidate_paths(cwd: Path, home: Path) -> list[tuple[Path, bool]]:
    """Config locations in search order; the flag marks a pyproject.toml section."""
    paths: list[tuple[Path, bool]] = []
    if env := os.environ.get("TIERED_RUN_CONFIG"):
        paths.append((Path(env), False))
    paths += [
        (cwd / "tiered-run.toml", False),
        (cwd / "pyproject.toml", True),
        (home / ".config/tiered-run/config.toml", False),
        (Path("/etc/tiered-run/config.toml"), False),
    ]
    return paths


def load_config(machine: Machine, explicit: Path | None = None) -> Config:
    """The explicit file, else the first that exists in search order, else built-in tiers."""
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"config file {explicit} does not exist; check the --config path")
        return parse_config(read_toml(explicit), machine, str(explicit))
    if (env := os.environ.get("TIERED_RUN_CONFIG")) and not Path(env).is_file():
        raise UsageError(f"TIERED_RUN_CONFIG={env} does not exist; fix or unset it")
    for path, in_pyproject in candidate_paths(Path.cwd(), Path.home()):
        if not path.is_file():
            continue
        data = read_toml(path, trusted=not in_pyproject)
        if in_pyproject:
            tool = data.get("tool", {})
            section = tool.get("tiered-run") if isinstance(tool, dict) else None
            if section is None:
                continue
            where = f"{path} [tool.tiered-run]"
            if not isinstance(section, dict):
                raise UsageError(f"{where}: must be a table, e.g. [tool.tiered-run]")
            # A pyproject.toml without our section configures nothing; one with it is read
            # again, this time only if no other user could have written it.
            section = read_toml(path).get("tool", {}).get("tiered-run", {})
            return parse_config(section, machine, where)
        return parse_config(data, machine, str(path))
    return Config(default_tiers(machine), DEFAULT_TIER, "built-in defaults")


def parse_config(data: dict, machine: Machine, source: str) -> Config:
    unknown = set(data) - {"tiers", "default_tier"}
    if unknown:
        raise UsageError(
            f"{source}: unknown key {sorted(unknown)[0]!r}; allowed: default_tier, [tiers.NAME]"
        )
    tiers = default_tiers(machine)
    tables = data.get("tiers", {})
    if not isinstance(tables, dict):
        raise UsageError(f'{source}: tiers must be tables, e.g. [tiers.batch] with cpus = "1-3"')
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f"{source}: tiers.{name} must be a table ([tiers.{name}])")
        tiers[name] = parse_tier(name, table, f"{source}: tiers.{name}")
    default = data.get("default_tier", DEFAULT_TIER)
    if not isinstance(default, str):
        raise UsageError(
            f'{source}: default_tier must be a tier name, e.g. "batch"; got {default!r}'
        )
    if default not in tiers:
        raise UsageError(
            f"{source}: default_tier {default!r} is not a tier; known: {', '.join(sorted(tiers))}"
        )
    return Config(tiers, default, source)


def _typed(kind: type, example: str) -> Callable[[object], object]:
    """TOML values are typed: take them as they are, never coerce ("false" is not False)."""

    def check(value: object) -> object:
        if type(value) is not kind:
            raise ValueError(f"expected {kind.__name__}, e.g. {example}; got {value!r}")
        return value

    return check


def ranged(kind: type, low: float, high: float, example: str) -> Callable[[object], float]:
    """A TOML number of `kind` (an int also serves as a float), finite and in range."""

    def check(value: object) -> float:
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise ValueError(f"expected {kind.__name__}, e.g. {example}; got {value!r}")
        return parse_number(value, low=low, high=high, example=example, whole=kind is int)  # type: ignore[arg-type]

    return check


KILL_AFTER_MAX = 3600.0  # a grace between SIGTERM and SIGKILL longer than an hour is a typo

_CONVERTERS: dict[str, Callable[[object], object]] = {
    "cpus": parse_cpus,
    "memory": partial(parse_size, ceiling=True),
    "memory_high": partial(parse_size, ceiling=True),
    "tasks_max": ranged(int, 1, MAX_TASKS, "4096"),
    "timeout": parse_timeout,
    "kill_after": partial(parse_duration, maximum=KILL_AFTER_MAX),
    "nice": ranged(int, -20, 19, "5"),
    "cpu_weight": ranged(int, 1, 10000, "100"),  # systemd's CPUWeight=/IOWeight= range
    "io_weight": ranged(int, 1, 10000, "100"),
    "user": _typed(str, '"builder"'),
    "protected": _typed(bool, "true"),
    "description": _typed(str, '"heavy workloads"'),
}


def parse_tier(name: str, table: dict, where: str) -> Tier:
    """One `[tiers.NAME]` table; every problem names the file, tier and key."""
    values: dict[str, object] = {}
    for key, raw in table.items():
        if key not in TIER_KEYS:
            raise UsageError(
                f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(TIER_KEYS))}"
            )
        try:
            values[key] = convert_value(key, raw)
        except (TypeError, ValueError) as err:
            raise UsageError(f"{where}.{key}: {err}") from err
    return Tier(name, **values)


def convert_value(key: str, raw: object) -> object:
    if isinstance(raw, bool) and key != "protected":
        raise ValueError(f"expected a value, got {raw}")
    if key == "cpus" and isinstance(raw, list):
        raw = ",".join(str(cpu) for cpu in raw)
    value = _CONVERTERS[key](raw)
    if key == "timeout" and value == 0:
        return None
    return value
