"""Tiers: named CPU sets with default ceilings. Pure functions over a described machine."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from tiered_run.errors import UsageError
from tiered_run.machine import Machine
from tiered_run.spec import Limits
from tiered_run.units import format_cpus

GiB = 1024**3
DEFAULT_TASKS_MAX = 8192


@dataclass(frozen=True)
class Tier:
    """A tier as configured; any field left None falls back to the built-in behaviour."""

    name: str
    cpus: tuple[int, ...] | None = None
    memory: int | None = None
    memory_high: int | None = None
    tasks_max: int | None = None
    timeout: float | None = None
    kill_after: float | None = None
    nice: int | None = None
    cpu_weight: int | None = None
    io_weight: int | None = None
    user: str | None = None
    protected: bool = False
    description: str = ""


TIER_KEYS = frozenset(f.name for f in fields(Tier)) - {"name"}


def memory_reserve(machine: Machine) -> int:
    """Memory the default tiers leave to the host: 10 % of RAM, at least 512 MiB."""
    return max(GiB // 2, machine.memory_total // 10)


def default_tiers(machine: Machine) -> dict[str, Tier]:
    """system (protected) on the first CPU(s), user next, batch on the rest.

    On 20 CPUs this is the user story's layout (0-1, 2-3, 4-19); below 4 CPUs the
    user and batch tiers share what system does not take, and a single CPU is shared by all.
    """
    cpus = machine.cpus
    n = len(cpus)
    n_system = max(1, round(n / 10)) if n > 1 else 0
    rest = cpus[n_system:] or cpus
    if n >= 4:
        n_user = max(1, n // 10)
        user_cpus, batch_cpus = rest[:n_user], rest[n_user:]
    else:
        user_cpus = batch_cpus = rest
    ceiling = max(GiB // 4, machine.memory_total - memory_reserve(machine))
    common = {"memory": ceiling, "tasks_max": DEFAULT_TASKS_MAX}
    return {
        "system": Tier(
            "system",
            cpus=cpus[:n_system] or cpus,
            protected=True,
            description="host and desktop; protected, no workload may run here",
        ),
        "user": Tier("user", cpus=user_cpus, description="interactive programs", **common),
        "batch": Tier("batch", cpus=batch_cpus, description="heavy workloads", **common),
    }


def check_cpus(cpus: tuple[int, ...], machine: Machine, where: str) -> None:
    if not cpus:
        raise UsageError(f"{where}: empty CPU list; give at least one CPU, e.g. --cpus 0")
    missing = sorted(set(cpus) - set(machine.cpus))
    if missing:
        raise UsageError(
            f"{where}: CPUs {format_cpus(missing)} are not online here "
            f"(online: {format_cpus(machine.cpus)}); use --cpus with online CPUs or edit the tier"
        )


def resolve_limits(tier: Tier, machine: Machine, overrides: dict[str, object]) -> Limits:
    """A tier's ceilings with command-line overrides on top, checked against the machine."""
    if tier.protected:
        raise UsageError(
            f"tier {tier.name!r} is protected: no workload may run in it; choose another --tier"
        )
    merged = replace(
        tier, **{k: v for k, v in overrides.items() if k in TIER_KEYS and v is not None}
    )
    cpus = merged.cpus if merged.cpus is not None else machine.cpus
    where = "--cpus" if overrides.get("cpus") is not None else f"tier {tier.name!r}"
    check_cpus(cpus, machine, where)
    limits = Limits(
        cpus=cpus,
        timeout=merged.timeout or None,
        kill_after=merged.kill_after if merged.kill_after is not None else 2.0,
        memory=merged.memory,
        memory_high=merged.memory_high,
        tasks_max=merged.tasks_max,
        nice=merged.nice,
        cpu_weight=merged.cpu_weight,
        io_weight=merged.io_weight,
        **{k: v for k, v in overrides.items() if k in _RUN_ONLY and v is not None},
    )
    if limits.memory and limits.memory_high and limits.memory_high > limits.memory:
        raise UsageError(
            "--memory-high is above --memory: the soft ceiling must be at or below the hard one"
        )
    if limits.tasks_max is not None and limits.tasks_max < 1:
        raise UsageError("--tasks-max must be at least 1")
    return limits


_RUN_ONLY = ("load_max", "pressure_max", "on_load", "stop_signal")
