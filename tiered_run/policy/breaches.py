"""Which ceiling a sample breaches: pure decisions, so they can be tested on synthetic samples."""

from __future__ import annotations

from dataclasses import dataclass

from tiered_run.inputs.settings import LIMITS
from tiered_run.inputs.units import format_duration, format_size, plural
from tiered_run.model.host import HostState
from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits, OnLoad
from tiered_run.model.usage import KERNEL_ONLY, Capability, OomSite, Usage


@dataclass(frozen=True)
class Breach:
    """A hard ceiling was crossed: the run ends with `outcome`; `message` tells the story."""

    outcome: Outcome
    message: str


def find_breach(
    limits: Limits,
    usage: Usage,
    elapsed: float | None,
    capabilities: frozenset[Capability],
) -> Breach | None:
    """The first hard ceiling `usage` breaches, checked in a fixed order; None if none."""
    if limits.timeout is not None and elapsed is not None and elapsed >= limits.timeout:
        return Breach(
            Outcome.TIMEOUT, f"still running at its {format_duration(limits.timeout)} timeout"
        )
    if usage.oom_kills and usage.oom_site is OomSite.ENCLOSING:
        return Breach(Outcome.MEMORY, enclosing_oom(limits, usage))
    if usage.oom_kills:
        ceiling = f" at the {format_size(limits.memory)} ceiling" if limits.memory else ""
        return Breach(
            Outcome.MEMORY,
            f"the kernel OOM-killed {plural(usage.oom_kills, 'process')}{ceiling}",
        )
    if (
        limits.memory is not None
        and Capability.MEMORY_LIMIT not in capabilities
        and usage.memory is not None
        and usage.memory > limits.memory
    ):
        return Breach(
            Outcome.MEMORY,
            f"used {format_size(usage.memory)}, above its {format_size(limits.memory)} ceiling",
        )
    if limits.tasks_max is not None:
        if usage.tasks_refused:
            return Breach(
                Outcome.TASKS,
                f"{plural(usage.tasks_refused, 'fork')} refused at the {limits.tasks_max}-task"
                " ceiling",
            )
        if Capability.TASKS_LIMIT not in capabilities and (usage.tasks or 0) > limits.tasks_max:
            return Breach(
                Outcome.TASKS, f"{usage.tasks} tasks, above the {limits.tasks_max}-task ceiling"
            )
    return None


def enclosing_oom(limits: Limits, usage: Usage) -> str:
    """An OOM kill that this run's own ceiling did not cause: say whose it was."""
    above = usage.oom_ceiling
    if above is None:
        where = "a ceiling above this run (an enclosing cgroup's, or the host's memory)"
    elif above.limit is None:
        where = f"the ceiling of enclosing cgroup {above.cgroup}"
    else:
        where = f"the {format_size(above.limit)} ceiling of enclosing cgroup {above.cgroup}"
    own = f", not at this run's {format_size(limits.memory)}" if limits.memory else ""
    return f"the kernel OOM-killed {plural(usage.oom_kills, 'process')} at {where}{own}"


def load_over(limits: Limits, host: HostState) -> str | None:
    """Why the host is over its load ceiling, or None when it is within it."""
    if limits.load_max is not None and host.load1 > limits.load_max:
        return f"host load {host.load1:.2f} above {limits.load_max:g}"
    pressure = host.pressure_max
    if limits.pressure_max is not None and pressure is not None and pressure > limits.pressure_max:
        resource = max(host.pressure, key=host.pressure.__getitem__)
        return f"host {resource} pressure {pressure:.1f} % above {limits.pressure_max:g} %"
    return None


def load_breach(limits: Limits, host: HostState) -> Breach | None:
    reason = load_over(limits, host)
    if reason is not None and limits.on_load is OnLoad.KILL:
        return Breach(Outcome.LOAD, reason)
    return None


def over_memory_high(limits: Limits, usage: Usage) -> bool:
    if limits.memory_high is None:
        return False
    return usage.memory_high_events > 0 or (usage.memory or 0) > limits.memory_high


def kernel_enforced(limits: Limits, capabilities: frozenset[Capability]) -> tuple[str, ...]:
    """The capabilities that hold a ceiling this run has (the settings table says which
    capability holds which ceiling): an unset ceiling is not enforced."""
    return tuple(
        setting.kernel.value
        for setting in LIMITS
        if setting.kernel in capabilities and getattr(limits, setting.name) is not None
    )


def not_enforced(limits: Limits, capabilities: frozenset[Capability]) -> tuple[str, ...]:
    """Ceilings that were asked for but that only the kernel can hold and this backend has
    no controller for (a weight, a quota, an I/O throttle, memory_low): the report says so
    instead of dropping them silently."""
    return tuple(
        setting.name
        for setting in LIMITS
        if setting.kernel in KERNEL_ONLY
        and setting.kernel not in capabilities
        and getattr(limits, setting.name) is not None
    )
