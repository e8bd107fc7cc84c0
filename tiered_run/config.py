"""Finding and reading the TOML configuration of tiers."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.machine import Machine
from tiered_run.tiers import TIER_KEYS, Tier, default_tiers
from tiered_run.trust import open_trusted
from tiered_run.units import parse_cpus, parse_duration, parse_size

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
        return parse_config(_read_toml(explicit), machine, str(explicit))
    if (env := os.environ.get("TIERED_RUN_CONFIG")) and not Path(env).is_file():
        raise UsageError(f"TIERED_RUN_CONFIG={env} does not exist; fix or unset it")
    for path, in_pyproject in candidate_paths(Path.cwd(), Path.home()):
        if not path.is_file():
            continue
        data = _read_toml(path, trusted=not in_pyproject)
        if in_pyproject:
            section = data.get("tool", {}).get("tiered-run")
            if section is None:
                continue
            # A pyproject.toml without our section configures nothing; one with it is read
            # again, this time only if no other user could have written it.
            section = _read_toml(path).get("tool", {}).get("tiered-run", {})
            return parse_config(section, machine, f"{path} [tool.tiered-run]")
        return parse_config(data, machine, str(path))
    return Config(default_tiers(machine), DEFAULT_TIER, "built-in defaults")


def _read_toml(path: Path, trusted: bool = True) -> dict:
    try:
        with open_trusted(path) if trusted else open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML ({err}); fix the file") from err
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror})") from err


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


def _weight(value: object) -> int:
    """systemd's CPUWeight=/IOWeight= range."""
    if type(value) is not int or not 1 <= value <= 10000:
        raise ValueError(f"expected a whole number from 1 to 10000, e.g. 100; got {value!r}")
    return value


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "cpus": parse_cpus,
    "memory": parse_size,
    "memory_high": parse_size,
    "tasks_max": _typed(int, "4096"),
    "timeout": parse_duration,
    "kill_after": parse_duration,
    "nice": _typed(int, "5"),
    "cpu_weight": _weight,
    "io_weight": _weight,
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
