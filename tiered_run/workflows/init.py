"""`tiered-run init` end to end: plan the tiers for this machine, write them where a run
will find them (never over a file without `force`, with an owner and mode the trust check
accepts), and say what would keep tiered-run from reading them."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from tiered_run.backends import choose
from tiered_run.errors import UsageError
from tiered_run.host.cgroup_facts import read_cgroup_facts
from tiered_run.host.machine import read_machine
from tiered_run.host.outputs import write_atomically, write_new
from tiered_run.host.safepath import make_directories
from tiered_run.inputs.config import LOCAL_CONFIG, SYSTEM_CONFIG, USER_CONFIG, candidate_paths
from tiered_run.inputs.trust import file_problem, open_trusted, path_problem
from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.policy.layout import Plan, default_layout, parse_layout, plan
from tiered_run.render.tier_config import render_tier_config

CONFIG_MODE = 0o644  # read by everyone, written by its owner only: what the trust check asks


class Place(enum.Enum):
    """Where a config goes, in the places runs look for one."""

    HERE = "here"  # ./tiered-run.toml
    USER = "user"  # ~/.config/tiered-run/config.toml
    SYSTEM = "system"  # /etc/tiered-run/config.toml


@dataclass(frozen=True)
class Made:
    """A config made for this machine: the plan, its TOML text, and where it goes."""

    plan: Plan
    text: str
    path: Path


def target(place: Place, root: Path | None = None) -> Path:
    """The file for `place`; `root` stands for / (an image being prepared, a test)."""
    if place is Place.HERE:
        return Path.cwd() / LOCAL_CONFIG
    path = Path.home() / USER_CONFIG if place is Place.USER else SYSTEM_CONFIG
    return path if root is None else root / path.relative_to("/")


def make_config(layout: str | None, path: Path) -> Made:
    """The tiers for this machine's online CPUs and memory (or `layout`), scaled to what
    `--backend auto` holds here, as commented TOML."""
    machine = read_machine()
    chosen = choose("auto").backend
    capabilities = chosen.probe().capabilities
    plan_ = plan(
        machine,
        parse_layout(layout) if layout else default_layout(machine),
        backend=chosen.name,
        capabilities=capabilities,
    )
    mode = read_cgroup_facts().mode
    machine_line = (
        f"{os.uname().nodename}: CPUs {format_cpus(machine.cpus)}, "
        f"{format_size(machine.memory_total)} of memory, cgroup {mode}, backend {chosen.name}"
    )
    command = f"tiered-run --tier {plan_.default} -- COMMAND"
    return Made(plan_, render_tier_config(plan_, machine_line, command), path)


def write_config(made: Made, force: bool, option: str = "init") -> list[str]:
    """Write the config (the directories above it made as needed); never over an existing
    file without `force`. Returns warnings: why a run may still not read it."""
    path = made.path
    make_directories(path.parent, option)
    try:
        if force:
            write_atomically(path, made.text, option, mode=CONFIG_MODE)
        else:
            write_new(path, made.text, option, mode=CONFIG_MODE)
    except FileExistsError:
        raise UsageError(
            f"{path} exists; tiered-run init never overwrites a config: --force replaces it "
            "(what it holds is lost), or move it away first",
            path=path,
            operation="write",
        ) from None
    except OSError as err:
        raise UsageError(
            f"cannot write {path} ({err.strerror})", path=path, operation="write", errno=err.errno
        ) from err
    return read_back(path)


def read_back(path: Path) -> list[str]:
    """What would keep a run from reading `path`: the trust check (ours, and root's when
    we are not root: sudo runs read as root), an earlier config in the search order, and
    a later one it now hides."""
    warnings = []
    try:
        open_trusted(path).close()
    except UsageError as err:
        warnings.append(f"tiered-run will not read it: {err.message}")
    if os.geteuid() != 0:
        real = Path(os.path.realpath(path))
        problem = file_problem(str(real), real.stat(), 0) or path_problem(str(real.parent), 0)
        if problem is not None:
            warnings.append(
                f"run as root (sudo tiered-run ...), tiered-run will not read it: {problem}; "
                "for root's runs, write root's config with sudo tiered-run init --system"
            )
    around = _configs_around(path)
    if around is None:
        warnings.append(
            f"runs do not look for it there: give --config {path}, or TIERED_RUN_CONFIG={path}"
        )
    elif around[0]:
        warnings.append(f"{around[0][0]} is read before it (see tiered-run tiers)")
    elif around[1]:
        warnings.append(
            f"runs read it instead of {around[1][0]} from now on: the tiers there are no "
            f"longer read (move what you need into {path})"
        )
    return warnings


def _configs_around(path: Path) -> tuple[list[Path], list[Path]] | None:
    """The configs a run finds before `path` in the search order, and those it found
    after it (one of which it read until now); None when a run does not look at `path`."""
    earlier: list[Path] = []
    seen = None
    for candidate, in_pyproject in candidate_paths(Path.cwd(), Path.home()):
        try:
            if seen is None and candidate.exists() and os.path.samefile(candidate, path):
                seen = earlier
                earlier = []
                continue
            if candidate.is_file() and (not in_pyproject or _has_our_section(candidate)):
                earlier.append(candidate)
        except OSError:
            continue
    return None if seen is None else (seen, earlier)


def _has_our_section(pyproject: Path) -> bool:
    """Whether a pyproject.toml configures tiered-run (`[tool.tiered-run]`, or a table
    below it such as `[tool.tiered-run.tiers.x]`), as a run reads it."""
    import tomllib

    try:
        tool = tomllib.loads(pyproject.read_text(errors="replace")).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(tool, dict) and "tiered-run" in tool
