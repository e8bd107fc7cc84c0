"""One tier as it resolves on this machine: the ceilings it sets, what holds each of them
here, and what would stop a run in it from starting. Pure: the tier, its config and the
facts in, a TierCheck out."""

from __future__ import annotations

from dataclasses import replace

from tiered_run.errors import UsageError
from tiered_run.inputs.config import Config
from tiered_run.inputs.settings import Setting, shown
from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.model.facts import Facts
from tiered_run.model.findings import CeilingCheck, Guard, TierCheck
from tiered_run.model.host import Machine
from tiered_run.model.spec import Limits
from tiered_run.policy.doctor.guards import CEILINGS, guard
from tiered_run.policy.tiers import (
    Tier,
    check_protected,
    memory_reserve,
    protected_tiers,
    resolve_limits,
)


def check_tier(
    tier: Tier, config: Config, facts: Facts, user_problem: str | None = None
) -> tuple[TierCheck, Limits | None]:
    """The tier's check, and its limits where they resolve (None where a run could not
    start). `user_problem`: why the tier's `user` cannot be resolved here, if it cannot."""
    cpus = facts.cpus
    allowed = tuple(c for c in cpus.online if c in cpus.allowed) or cpus.online
    machine = Machine(cpus=allowed, memory_total=facts.memory_total)
    owners = protected_tiers(config.tiers)
    blockers: list[str] = []
    outside = sorted((set(tier.cpus or ()) & set(cpus.online)) - set(allowed))
    if outside:
        blockers.append(
            f"CPUs {format_cpus(outside)} are online, but tiered-run may only use "
            f"{format_cpus(allowed)} from here (see cpus.online)"
        )
    base = TierCheck(tier.name, config.source, tier.name == config.default_tier, tier.cpus or ())
    try:
        limits = resolve_limits(tier, machine, {}, source=config.source, protected=owners)
        check_protected(limits.cpus, machine, owners, f"tier {tier.name!r}")
    except UsageError as err:
        if not outside:
            blockers.append(err.message)
        return _with(base, blockers=tuple(blockers)), None
    cpuset = facts.cgroups.cpuset
    if cpuset is not None and facts.auto in ("cgroup1", "cgroup2", "plain"):
        beyond = sorted(set(limits.cpus) - set(cpuset))
        if beyond:
            blockers.append(
                f"CPUs {format_cpus(beyond)} are outside tiered-run's own cpuset "
                f"({format_cpus(cpuset)}), within which runs are made"
            )
    if user_problem:
        blockers.append(user_problem)
    ceilings = tuple(
        _ceiling(setting, value, facts)
        for setting in CEILINGS
        if (value := getattr(limits, setting.name)) is not None
    )
    check = _with(
        base,
        cpus=limits.cpus,
        ceilings=ceilings,
        blockers=tuple(blockers),
        notes=tuple(_notes(tier, limits, facts)),
    )
    return check, limits


def _with(check: TierCheck, **changes: object) -> TierCheck:
    return replace(check, **changes)  # type: ignore[arg-type]


def value_text(setting: Setting, value: object) -> str:
    """A ceiling as a user would write it in a tier: `4-19`, `20.0 GiB`, `15 min`."""
    if setting.name == "cpus":
        return format_cpus(value)  # type: ignore[arg-type]
    if setting.unit == "bytes":
        return format_size(value)  # type: ignore[arg-type]
    return shown(setting, value)


def _ceiling(setting: Setting, value: object, facts: Facts) -> CeilingCheck:
    hybrid = facts.cgroups.mode in ("v1", "hybrid")
    held, how = guard(setting, facts.chosen, hybrid, facts.interval)
    trouble = ""
    if setting.name == "memory" and held is Guard.KERNEL:
        trouble = _memory_trouble(value, facts)  # type: ignore[arg-type]
    raw = setting.to_json(value) if setting.to_json else value
    return CeilingCheck(
        setting.name, setting.key, raw, value_text(setting, value), held, how, trouble
    )


def _memory_trouble(memory: int, facts: Facts) -> str:
    if facts.kernel.panic_on_oom == 2:
        return "vm.panic_on_oom=2: the machine panics when a run reaches it"
    if facts.auto == "systemd":
        return ""  # the run's scope is in its tier's slice, not below our groups
    hanging = [
        c
        for c in facts.cgroups.ceilings
        if c.oom_kill_disable and c.limit is not None and c.limit <= memory
    ]
    if hanging:
        first = hanging[0]
        return (
            f"cgroup {first.cgroup} above the run has a {format_size(first.limit or 0)} "
            "ceiling with its OOM killer disabled: the tree hangs there instead of being killed"
        )
    return ""


def _notes(tier: Tier, limits: Limits, facts: Facts) -> list[str]:
    notes = []
    isolated = sorted(set(limits.cpus) & set(facts.cpus.isolated))
    if isolated:
        notes.append(
            f"CPUs {format_cpus(isolated)} are isolated: the scheduler does not spread the "
            "run's processes over them (see cpus.isolcpus)"
        )
    if limits.memory is None:
        notes.append(
            f"no memory ceiling: a runaway may take all {format_size(facts.memory_total)} "
            "of the host's memory"
        )
    else:
        reserve = memory_reserve(Machine(facts.cpus.online, facts.memory_total))
        if limits.memory > facts.memory_total - reserve:
            notes.append(
                f"the memory ceiling leaves the host less than {format_size(reserve)}: the "
                "desktop may stall before the run is stopped"
            )
        if facts.auto != "systemd":
            smaller = [
                c for c in facts.cgroups.ceilings if c.limit is not None and c.limit < limits.memory
            ]
            if smaller:
                first = min(smaller, key=lambda c: c.limit or 0)
                notes.append(
                    f"cgroup {first.cgroup} above the run has a smaller ceiling "
                    f"({format_size(first.limit or 0)}): runs are OOM-killed there first"
                )
    if limits.timeout is None:
        notes.append(
            "no timeout: a run that hangs keeps its CPUs until someone ends it; give "
            "--timeout, or timeout in the tier"
        )
    return notes
