"""Tiers: named CPU sets with default ceilings. Pure functions over a described machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.settings import (
    LIMITS,
    MAX_TASKS,
    SETTING,
    Setting,
    Where,
    keys,
    term,
    with_settings,
)
from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.model.spec import Limits

GiB = 1024**3
DEFAULT_TASKS_MAX = 8192


def _unset_unless_tier_only(setting: Setting) -> object:
    """A setting a run can also give is None in a tier (the run's default applies); one
    only a tier has (protected, description) takes the table's default."""
    return setting.default if setting.where == Where.TIER else None


@dataclass(frozen=True)
@with_settings(Where.TIER, _unset_unless_tier_only)
class Tier:
    """A tier as configured: a name, and a field for every key of `[tiers.NAME]` in the
    settings table; a field left None falls back to the built-in behaviour."""

    name: str


TIER_KEYS = frozenset(keys(Where.TIER))


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


def usable_hint(machine: Machine, protected: Mapping[int, str], from_file: bool = False) -> str:
    """Where a workload may run instead: the online CPUs no protected tier keeps, as the
    user would give them (`--cpus 1-3`, or `cpus = "1-3"` in a ladder file)."""
    usable = tuple(cpu for cpu in machine.cpus if cpu not in protected)
    if not usable:
        return f"no online CPU here ({format_cpus(machine.cpus)}) is outside the protected tiers"
    return f"unprotected CPUs here: {format_cpus(usable)}, e.g. {_cpus_given(usable, from_file)}"


def _cpus_given(cpus: tuple[int, ...], from_file: bool) -> str:
    return f'cpus = "{format_cpus(cpus)}"' if from_file else f"--cpus {format_cpus(cpus)}"


def cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """`CPU 1`, `CPUs 4-19`."""
    return ("CPU " if len(cpus) == 1 else "CPUs ") + format_cpus(cpus)


def check_cpus(
    cpus: tuple[int, ...],
    machine: Machine,
    where: str,
    protected: Mapping[int, str] | None = None,
    from_file: bool = False,
) -> None:
    if not cpus:
        example = _cpus_given((0,), from_file)
        raise UsageError(f"{where}: empty CPU list; give at least one CPU, e.g. {example}")
    missing = sorted(set(cpus) - set(machine.cpus))
    if missing:
        hint = usable_hint(machine, protected or {}, from_file)
        raise UsageError(
            f"{where}: {cpu_list(missing)} {'is' if len(missing) == 1 else 'are'} not online here "
            f"(online: {format_cpus(machine.cpus)}); {hint}"
        )


def check_protected(
    cpus: tuple[int, ...],
    machine: Machine,
    protected: Mapping[int, str],
    where: str,
    allow: bool = False,
    from_file: bool = False,
) -> str | None:
    """Refuse a run on CPUs a protected tier keeps for the host; with `allow`, the warning
    the report carries instead. `from_file`: the run is a ladder step, whose CPUs are
    given as a key."""
    taken = sorted(cpu for cpu in cpus if cpu in protected)
    if not taken:
        return None
    owners = ", ".join(repr(name) for name in sorted({protected[cpu] for cpu in taken}))
    what = f"{where} runs on {cpu_list(taken)} of protected tier {owners}"
    if allow:
        return f"{what}, allowed by --allow-protected-cpus"
    raise UsageError(
        f"{what}; {usable_hint(machine, protected, from_file)}; "
        "--allow-protected-cpus runs there anyway"
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
    overrides: Mapping[str, object],
    *,
    source: str | None = None,
    protected: Mapping[int, str] | None = None,
    from_file: bool = False,
) -> Limits:
    """A tier's ceilings with overrides on top (each setting: the override, else the
    tier's, else the table's default), checked against the machine.

    `source` (the config the tier came from) and `protected` (CPUs kept by protected tiers)
    only make the messages say where to look and what would work instead; `from_file`
    says the overrides came from a ladder file, so messages name its keys, not flags.
    """
    if tier.protected:
        another = "another tier" if from_file else "another --tier"
        raise UsageError(
            f"tier {tier.name!r} is protected: no workload may run in it; choose {another}"
        )
    given = {name: value for name, value in overrides.items() if value is not None}
    where = f"tier {tier.name!r}" + (f" (from {source})" if source else "")

    def said(name: str, of_tier: str = "{where}: {key}") -> str:
        """A setting as the user wrote it: the flag, or the step's key, where overridden;
        the key of the tier's file where not."""
        if name in given:
            return term(name, from_file)
        return of_tier.format(where=where, key=SETTING[name].key)

    values: dict[str, object] = {}
    for setting in LIMITS:
        value = given.get(setting.name, getattr(tier, setting.name, None))
        if setting.lifts and not value:
            value = None  # 0: `none`, no ceiling
        values[setting.name] = setting.default if value is None else value
    # A tier that names no CPUs gets every online CPU no protected tier keeps.
    unprotected = tuple(cpu for cpu in machine.cpus if cpu not in (protected or {}))
    if values["cpus"] is None:
        values["cpus"] = unprotected or machine.cpus
    limits = Limits(**values)  # type: ignore[arg-type]
    check_cpus(limits.cpus, machine, said("cpus", "{where}"), protected, from_file)
    for key in ("memory", "memory_high"):
        value = getattr(limits, key)
        if value and value > machine.memory_total:
            raise UsageError(
                f"{said(key)} {format_size(value)} is above this machine's "
                f"{format_size(machine.memory_total)} of memory; give less, or none for no ceiling"
            )
    if limits.memory and limits.memory_high and limits.memory_high > limits.memory:
        pair = ("memory_high", "memory")
        if any(name in given for name in pair):  # `--memory-high is above the memory of ...`
            soft, hard = (said(name, "the {key} of {where}") for name in pair)
        else:  # both from the tier's file: `tier 't' (from F): memory_high is above memory`
            soft, hard = said("memory_high"), SETTING["memory"].key
        raise UsageError(
            f"{soft} is above {hard}: the soft ceiling must be at or below the hard one"
        )
    if limits.tasks_max is not None and not 1 <= limits.tasks_max <= MAX_TASKS:
        raise UsageError(f"{said('tasks_max')} must be from 1 to {MAX_TASKS}, e.g. 4096")
    return limits
