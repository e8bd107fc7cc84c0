"""Finding and reading the TOML configuration of tiers."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.settings import SETTING, BadValue, Where, keys, read_table
from tiered_run.inputs.trust import read_toml
from tiered_run.policy.tiers import TIER_KEYS, Tier, default_tiers

DEFAULT_TIER = "batch"
# Where configs are looked for (and where `tiered-run init` writes them).
LOCAL_CONFIG = "tiered-run.toml"  # in the working directory
USER_CONFIG = ".config/tiered-run/config.toml"  # in the home directory
SYSTEM_CONFIG = Path("/etc/tiered-run/config.toml")


@dataclass(frozen=True)
class Config:
    tiers: dict[str, Tier]
    default_tier: str
    source: str
    # The file it was read from (None for the built-in tiers): outputs must not replace it.
    path: Path | None = None
    # `history = true`: every run is recorded in the local history, as with --history.
    history: bool = False

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
        (cwd / LOCAL_CONFIG, False),
        (cwd / "pyproject.toml", True),
        (home / USER_CONFIG, False),
        (SYSTEM_CONFIG, False),
    ]
    return paths


def _is_file(path: Path) -> bool:
    """A regular file we may look at; a path we may not even stat is not one of ours."""
    try:
        return path.is_file()
    except OSError:
        return False


def load_config(machine: Machine, explicit: Path | None = None) -> Config:
    """The explicit file, else the first that exists in search order, else built-in tiers."""
    if explicit is not None:
        if not _is_file(explicit):
            raise UsageError(
                f"config file {explicit} does not exist or cannot be read; check the --config path",
                source=str(explicit),
                key="--config",
            )
        return replace(parse_config(read_toml(explicit), machine, str(explicit)), path=explicit)
    if (env := os.environ.get("TIERED_RUN_CONFIG")) and not _is_file(Path(env)):
        raise UsageError(
            f"TIERED_RUN_CONFIG={env} does not exist or cannot be read; fix or unset it"
        )
    for path, in_pyproject in candidate_paths(Path.cwd(), Path.home()):
        if not _is_file(path):
            continue  # an unreadable place (`sudo -u nobody` keeps HOME=/root) holds none of ours
        data = read_toml(path, trusted=not in_pyproject)
        if in_pyproject:
            tool = data.get("tool", {})
            section = tool.get("tiered-run") if isinstance(tool, dict) else None
            if section is None:
                continue
            where = f"{path} [tool.tiered-run]"
            if not isinstance(section, dict):
                raise UsageError(f"{where}: must be a table, e.g. [tool.tiered-run]", source=where)
            # A pyproject.toml without our section configures nothing; one with it is read
            # again, this time only if no other user could have written it.
            section = read_toml(path).get("tool", {}).get("tiered-run", {})
            return replace(parse_config(section, machine, where), path=path)
        return replace(parse_config(data, machine, str(path)), path=path)
    return Config(default_tiers(machine), DEFAULT_TIER, "built-in defaults")


def parse_config(data: dict, machine: Machine, source: str) -> Config:
    unknown = set(data) - {"tiers", "default_tier", "history"}
    if unknown:
        key = sorted(unknown)[0]
        raise UsageError(
            f"{source}: unknown key {key!r}; allowed: default_tier, history, [tiers.NAME]",
            source=source,
            key=key,
        )
    tiers = default_tiers(machine)
    tables = data.get("tiers", {})
    if not isinstance(tables, dict):
        raise UsageError(
            f'{source}: tiers must be tables, e.g. [tiers.batch] with cpus = "1-3"',
            source=source,
            key="tiers",
        )
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(
                f"{source}: tiers.{name} must be a table ([tiers.{name}])",
                source=source,
                key=f"tiers.{name}",
            )
        tiers[name] = parse_tier(name, table, source)
    default = data.get("default_tier", DEFAULT_TIER)
    if not isinstance(default, str):
        raise UsageError(
            f'{source}: default_tier must be a tier name, e.g. "batch"; got {default!r}',
            source=source,
            key="default_tier",
        )
    if default not in tiers:
        raise UsageError(
            f"{source}: default_tier {default!r} is not a tier; known: {', '.join(sorted(tiers))}",
            source=source,
            key="default_tier",
        )
    history = data.get("history", False)
    if not isinstance(history, bool):
        raise UsageError(
            f"{source}: history must be true or false; got {history!r}",
            source=source,
            key="history",
        )
    return Config(tiers, default, source, history=history)


def parse_tier(name: str, table: dict, source: str) -> Tier:
    """One `[tiers.NAME]` table; every problem names the file, the tier and the key:
    `FILE: tiers.NAME.KEY: ...`."""
    where = f"tiers.{name}"
    if unknown := sorted(set(table) - TIER_KEYS):
        allowed = ", ".join(sorted(TIER_KEYS))
        raise UsageError(
            f"{source}: {where}: unknown key {unknown[0]!r}; allowed: {allowed}",
            source=source,
            key=f"{where}.{unknown[0]}",
        )
    try:
        values = read_table(table, keys(Where.TIER))
    except BadValue as err:
        key = f"{where}.{err.key}"
        raise UsageError(f"{source}: {key}: {err}", source=source, key=key) from err
    # A ceiling a tier lifts (`none`, a timeout of 0) is a tier without that ceiling.
    return Tier(name, **{k: None if SETTING[k].lifts and not v else v for k, v in values.items()})
