"""Findings on what happens when memory runs out: overcommit, OOM killers disabled above
us (tasks hang instead of failing), ceilings above us, panic_on_oom, and the user-space
OOM daemons that may end a run before its own ceiling does."""

from __future__ import annotations

from tiered_run.inputs.units import format_size
from tiered_run.model.facts import Facts, MemoryCeiling
from tiered_run.model.findings import Finding, Severity

AREA = "memory"
# User-space OOM killers: they act on host memory pressure, before the kernel would.
OOM_DAEMONS = {
    "earlyoom": "kills the largest process when available memory and swap fall below its "
    "thresholds (10 % by default)",
    "systemd-oomd": "kills whole cgroups under memory pressure or swap use, where units set "
    "ManagedOOMMemoryPressure= or ManagedOOMSwap=",
    "oomd": "kills cgroups by its configured rules under pressure",
    "nohang": "kills or terminates processes when memory runs low",
}


def memory_findings(facts: Facts) -> list[Finding]:
    found = [_overcommit(facts), _oom_disabled(facts), _panic(facts), _daemons(facts)]
    enclosing = enclosing_ceiling(facts)
    if enclosing is not None:
        found.insert(2, _enclosing(facts, enclosing))
    return found


def enclosing_ceiling(facts: Facts) -> MemoryCeiling | None:
    """The smallest memory ceiling at or above tiered-run's own cgroup that is below the
    machine's memory: runs made below it are OOM-killed there first."""
    below = [
        c for c in facts.cgroups.ceilings if c.limit is not None and c.limit < facts.memory_total
    ]
    return min(below, key=lambda c: c.limit or 0) if below else None


def _overcommit(facts: Facts) -> Finding:
    mode = facts.kernel.overcommit_memory
    setting = f"vm.overcommit_memory={mode}"
    if mode == 1:
        return Finding(
            "memory.overcommit",
            AREA,
            Severity.NOTE,
            f"{setting}: the kernel never refuses an allocation",
            "a runaway grows until a ceiling's OOM killer stops it; without a memory ceiling "
            "that is the host's OOM killer, after everything else has been squeezed",
        )
    if mode == 2:
        ratio = facts.kernel.overcommit_ratio
        kbytes = facts.kernel.overcommit_kbytes
        limit = f"vm.overcommit_kbytes={kbytes}" if kbytes else f"vm.overcommit_ratio={ratio}"
        return Finding(
            "memory.overcommit",
            AREA,
            Severity.WARNING,
            f"{setting}: strict accounting ({limit})",
            "allocations fail (ENOMEM) once the host's commit limit is reached, for every "
            "process: a workload may die of a failed allocation (its own exit code, not 122) "
            "before its ceiling, and a big run can make the desktop's allocations fail",
            "sysctl -w vm.overcommit_memory=0 (persist it in /etc/sysctl.d/), and let the "
            "run's memory ceiling be the limit",
        )
    return Finding(
        "memory.overcommit",
        AREA,
        Severity.OK,
        f"{setting}: heuristic overcommit" if mode == 0 else "vm.overcommit_memory: unknown",
        "allocations succeed until memory runs out; a run's ceiling is where the kernel "
        "then OOM-kills it",
    )


def _oom_disabled(facts: Facts) -> Finding:
    disabled = [c for c in facts.cgroups.ceilings if c.oom_kill_disable]
    if not disabled:
        return Finding(
            "memory.oom-kill-disabled",
            AREA,
            Severity.OK,
            "no cgroup at or above tiered-run's own has its OOM killer disabled",
            "a ceiling reached is an OOM kill, which ends the run as a memory outcome",
        )
    names = ", ".join(
        f"{c.cgroup} ({format_size(c.limit) if c.limit else 'no ceiling'})" for c in disabled
    )
    return Finding(
        "memory.oom-kill-disabled",
        AREA,
        Severity.PROBLEM,
        f"memory.oom_control has oom_kill_disable 1 on {names}",
        "when that group reaches its ceiling nothing is killed: its tasks, a run's among "
        "them, hang until memory frees, and only the timeout ends such a run; disabling the "
        "OOM killer makes tasks hang, not succeed",
        "echo 0 > /sys/fs/cgroup/memory<CGROUP>/memory.oom_control; for Docker, drop "
        "--oom-kill-disable and give the container a larger --memory instead",
    )


def _enclosing(facts: Facts, ceiling: MemoryCeiling) -> Finding:
    assert ceiling.limit is not None
    elsewhere = (
        " (the systemd backend makes runs elsewhere, not below it)"
        if (facts.auto == "systemd")
        else ""
    )
    return Finding(
        "memory.enclosing-ceiling",
        AREA,
        Severity.NOTE,
        f"cgroup {ceiling.cgroup}, at or above tiered-run's own, has a "
        f"{format_size(ceiling.limit)} memory ceiling{elsewhere}",
        "runs made below it are OOM-killed at that ceiling first, whatever their own; the "
        "report then names it as the enclosing ceiling",
        "give the workload's tier a memory ceiling below it, or start tiered-run outside "
        "that group",
    )


def _panic(facts: Facts) -> Finding:
    panic = facts.kernel.panic_on_oom
    if panic == 2:
        return Finding(
            "memory.panic-on-oom",
            AREA,
            Severity.PROBLEM,
            "vm.panic_on_oom=2: the kernel panics on any OOM, a cgroup's included",
            "a run that reaches its memory ceiling takes the whole machine down (a panic, "
            "then a reboot) instead of being killed",
            "sysctl -w vm.panic_on_oom=0, and persist it in /etc/sysctl.d/",
        )
    if panic == 1:
        return Finding(
            "memory.panic-on-oom",
            AREA,
            Severity.WARNING,
            "vm.panic_on_oom=1: the kernel panics when the whole host runs out of memory",
            "a run's own ceiling still OOM-kills only the run; a runaway without a ceiling "
            "panics the machine",
            "sysctl -w vm.panic_on_oom=0, and give every heavy run a memory ceiling",
        )
    return Finding(
        "memory.panic-on-oom",
        AREA,
        Severity.OK,
        "vm.panic_on_oom=0" if panic == 0 else "vm.panic_on_oom: unknown",
        "an OOM kills processes, never the machine",
    )


def _daemons(facts: Facts) -> Finding:
    running = sorted({p.comm for p in facts.processes if p.comm in OOM_DAEMONS})
    if running:
        return Finding(
            "memory.oom-daemons",
            AREA,
            Severity.NOTE,
            f"user-space OOM killer running: {', '.join(running)}",
            "; ".join(f"{name} {OOM_DAEMONS[name]}" for name in running)
            + ". It may end a run before the run's ceiling does: the report then shows "
            "a signal, not a memory outcome",
        )
    return Finding(
        "memory.oom-daemons",
        AREA,
        Severity.NOTE,
        "no earlyoom or systemd-oomd running",
        "outside the runs' ceilings only the kernel's OOM killer acts, and late: the host "
        "swaps and stalls first, as in a freeze that needs a reset",
        "give every heavy run a memory ceiling (tiered-run init writes tiers with one), and "
        "consider earlyoom (apt install earlyoom) for everything else",
    )
