"""Tiers: named CPU sets with default ceilings. Pure functions over a described machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.model.spec import Limits

GiB = 1024**3
DEFAULT_TASKS_MAX = 8192
# The kernel's PID_MAX_LIMIT on 64-bit machines: no tree can hold more tasks, and pids.max
# refuses larger values (which a ladder found only when the step started).
MAX_TASKS = 4_194_304


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
    system = Tier(
        "system",
        cpus=cpus[:n_system],
        protected=True,
        description="host and desktop; protected, no workload may run here",
    )
    if not n_system:  # one CPU: nothing can be kept for the system, so nothing is protected
        system = Tier("system", cpus=cpus, description="host and desktop; shares the only CPU")
    return {
        "system": system,
        "user": Tier("user", cpus=user_cpus, description="interactive programs", **common),
        "batch": Tier("batch", cpus=batch_cpus, description="heavy workloads", **common),
    }


def protected_tiers(tiers: Mapping[str, Tier]) -> dict[int, str]:
    """Every CPU a protected tier keeps for the host, and the tier that keeps it."""
    owners: dict[int, str] = {}
    for tier in tiers.values():
        if tier.protected:
            for cpu in tier.cpus or ():
                owners.setdefault(cpu, tier.name)
    return owners


def usable_hint(machine: Machine, protected: Mapping[int, str]) -> str:
    """Where a workload may run instead: the online CPUs no protected tier keeps."""
    usable = tuple(cpu for cpu in machine.cpus if cpu not in protected)
    if not usable:
        return f"no online CPU here ({format_cpus(machine.cpus)}) is outside the protected tiers"
    return f"unprotected CPUs here: {format_cpus(usable)}, e.g. --cpus {format_cpus(usable)}"


def cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """`CPU 1`, `CPUs 4-19`."""
    return ("CPU " if len(cpus) == 1 else "CPUs ") + format_cpus(cpus)


def check_cpus(
    cpus: tuple[int, ...],
    machine: Machine,
    where: str,
    protected: Mapping[int, str] | None = None,
) -> None:
    if not cpus:
        raise UsageError(f"{where}: empty CPU list; give at least one CPU, e.g. --cpus 0")
    missing = sorted(set(cpus) - set(machine.cpus))
    if missing:
        raise UsageError(
            f"{where}: {cpu_list(missing)} {'is' if len(missing) == 1 else 'are'} not online here "
            f"(online: {format_cpus(machine.cpus)}); {usable_hint(machine, protected or {})}"
        )


def check_protected(
    cpus: tuple[int, ...],
    machine: Machine,
    protected: Mapping[int, str],
    where: str,
    allow: bool = False,
) -> str | None:
    """Refuse a run on CPUs a protected tier keeps for the host; with `allow`, the warning
    the report carries instead."""
    taken = sorted(cpu for cpu in cpus if cpu in protected)
    if not taken:
        return None
    owners = ", ".join(repr(name) for name in sorted({protected[cpu] for cpu in taken}))
    what = f"{where} runs on {cpu_list(taken)} of protected tier {owners}"
    if allow:
        return f"{what}, allowed by --allow-protected-cpus"
    raise UsageError(
        f"{what}; {usable_hint(machine, protected)}; --allow-protected-cpus runs there anyway"
    )


def reserve_warning(tier: Tier, limits: Limits, machine: Machine) -> str | None:
    """Say when an override lifts the memory ceiling into the reserve the tier kept for
    the host (the built-in tiers leave it 10 % of RAM, at least 512 MiB)."""
    reserve = memory_reserve(machine)
    room = machine.memory_total - reserve
    if not tier.memory or tier.memory > room:
        return None  # the tier itself kept no reserve
    if limits.memory is not None and limits.memory <= room:
        return None
    ceiling = "no memory ceiling" if limits.memory is None else format_size(limits.memory)
    return (
        f"memory: {ceiling} overrides the host reserve of tier {tier.name!r}; the host may be "
        f"left less than {format_size(reserve)}"
    )


def resolve_limits(
    tier: Tier,
    machine: Machine,
    overrides: dict[str, object],
    *,
    source: str | None = None,
    protected: Mapping[int, str] | None = None,
) -> Limits:
    """A tier's ceilings with command-line overrides on top, checked against the machine.

    `source` (the config the tier came from) and `protected` (CPUs kept by protected
    tiers) only make the messages say where to look and what would work instead.
    """
    if tier.protected:
        raise UsageError(
            f"tier {tier.name!r} is protected: no workload may run in it; choose another --tier"
        )
    merged = replace(
        tier, **{k: v for k, v in overrides.items() if k in TIER_KEYS and v is not None}
    )
    # A tier that names no CPUs gets every online CPU no protected tier keeps.
    unprotected = tuple(cpu for cpu in machine.cpus if cpu not in (protected or {}))
    cpus = merged.cpus if merged.cpus is not None else unprotected or machine.cpus
    where = f"tier {tier.name!r}" + (f" (from {source})" if source else "")
    if overrides.get("cpus") is not None:
        where = "--cpus"
    check_cpus(cpus, machine, where, protected)
    for key in ("memory", "memory_high"):
        value = getattr(merged, key)
        if value and value > machine.memory_total:
            option = "--" + key.replace("_", "-")
            raise UsageError(
                f"{option} {format_size(value)} is above this machine's "
                f"{format_size(machine.memory_total)} of memory; give less, or none for no ceiling"
            )
    limits = Limits(
        cpus=cpus,
        timeout=merged.timeout or None,
        kill_after=merged.kill_after if merged.kill_after is not None else 2.0,
        memory=merged.memory or None,
        memory_high=merged.memory_high or None,
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
    if limits.tasks_max is not None and not 1 <= limits.tasks_max <= MAX_TASKS:
        raise UsageError(f"--tasks-max must be from 1 to {MAX_TASKS}, e.g. 4096")
    return limits


_RUN_ONLY = ("load_max", "pressure_max", "on_load", "stop_signal")
