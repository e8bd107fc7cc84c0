"""Findings on kernel features a guarded run uses: PSI, memory.peak, cgroup.kill, freeze,
swap and whether the memory controller counts it."""

from __future__ import annotations

import re

from tiered_run.inputs.units import format_size
from tiered_run.model.facts import Facts
from tiered_run.model.findings import Finding, Severity
from tiered_run.model.usage import Capability

AREA = "kernel"
# The release that brought each cgroup v2 file, for when our own group (the root of the
# hierarchy, or one without the memory controller) cannot show it.
_SINCE = {"memory.peak": (5, 19), "cgroup.kill": (5, 14), "cgroup.freeze": (5, 2)}


def release_at_least(release: str, version: tuple[int, int]) -> bool | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return None if match is None else (int(match.group(1)), int(match.group(2))) >= version


def v2_file(facts: Facts, name: str) -> bool | None:
    """Whether the kernel's cgroup v2 has `name`: seen in our group, or told by the release
    where our group cannot have it (the root has no cgroup.kill; memory.peak needs the
    memory controller)."""
    group = facts.cgroups.unified
    if group is None:
        return None
    if name in group.files:
        return True
    shown_here = group.path not in ("", "/") and (
        name != "memory.peak" or "memory.max" in group.files
    )
    return False if shown_here else release_at_least(facts.kernel.release, _SINCE[name])


def kernel_findings(facts: Facts) -> list[Finding]:
    return [_psi(facts), _peak(facts), _kill(facts), _freeze(facts), _swap(facts)]


def _psi(facts: Facts) -> Finding:
    kernel = facts.kernel
    if set(kernel.psi) >= {"cpu", "memory", "io"}:
        return Finding(
            "kernel.psi",
            AREA,
            Severity.OK,
            "pressure stall information (PSI) can be read for cpu, memory and io",
            "--pressure-max, pressure_max in a ladder's [settle] and the report's host "
            "pressure work",
        )
    return Finding(
        "kernel.psi",
        AREA,
        Severity.WARNING,
        f"no pressure stall information: {kernel.psi_problem or 'some resources are missing'}",
        "--pressure-max and a ladder's pressure_max cannot be checked; load is all "
        "tiered-run can watch",
        "boot with the kernel parameter psi=1 (kernels built with CONFIG_PSI_DEFAULT_DISABLED "
        "need it), e.g. in GRUB_CMDLINE_LINUX of /etc/default/grub, then update-grub",
    )


def _peak(facts: Facts) -> Finding:
    chosen = facts.chosen
    v1 = facts.cgroups.mode in ("v1", "hybrid")
    source = "memory.max_usage_in_bytes (cgroup v1)" if v1 else "memory.peak (Linux 5.19+)"
    if Capability.MEMORY_PEAK in chosen.capabilities:
        return Finding(
            "kernel.memory-peak",
            AREA,
            Severity.OK,
            f"the kernel records each run's peak memory: {source}",
            "the report's peak is exact, not sampled; calibrate builds on it",
        )
    has = v2_file(facts, "memory.peak")
    return Finding(
        "kernel.memory-peak",
        AREA,
        Severity.NOTE,
        "peak memory is sampled"
        + (": this kernel has no memory.peak (Linux 5.19+)" if has is False else ""),
        f"a spike shorter than the {facts.interval:g} s sampling interval is missed, and "
        "calibrate's recommendation may be low",
        "a kernel of 5.19 or later with cgroup v2, or cgroup v1's memory controller"
        if has is False
        else "a backend with the memory controller (see backend.auto)",
    )


def _kill(facts: Facts) -> Finding:
    has = v2_file(facts, "cgroup.kill")
    if has:
        return Finding(
            "kernel.cgroup-kill",
            AREA,
            Severity.OK,
            "cgroup.kill (Linux 5.14+) is available",
            "SIGKILL of a run is one write that takes the whole tree, with no fork race",
        )
    freezer = "freezer" in facts.cgroups.v1_controllers
    return Finding(
        "kernel.cgroup-kill",
        AREA,
        Severity.NOTE,
        "no cgroup.kill" + (" (Linux 5.14+)" if has is False else " (no cgroup2 mount)"),
        "SIGKILL of a run is freeze, kill every process, thaw, repeat"
        if freezer
        else "SIGKILL of a run goes to each process found; a process forked meanwhile is "
        "caught on the next round",
        "Linux 5.14 or later with a cgroup2 mount" if has is False else "",
    )


def _freeze(facts: Facts) -> Finding:
    v2 = v2_file(facts, "cgroup.freeze")
    freezer = "freezer" in facts.cgroups.v1_controllers
    if Capability.FREEZE in facts.chosen.capabilities and (v2 or freezer):
        how = "cgroup.freeze (cgroup v2)" if v2 else "the v1 freezer"
        return Finding(
            "kernel.freeze",
            AREA,
            Severity.OK,
            f"a whole tree can be frozen at once: {how}",
            "Ctrl-Z and --on-load pause stop every process of a run together",
        )
    return Finding(
        "kernel.freeze",
        AREA,
        Severity.NOTE,
        "no cgroup freezer for runs",
        "a pause is SIGSTOP to each process found; one forked meanwhile runs on until the "
        "next round",
        "a backend with a freezer: cgroup v2 (Linux 5.2+) or the v1 freezer controller",
    )


def _swap(facts: Facts) -> Finding:
    total = facts.kernel.swap_total
    accounting = facts.cgroups.swap_accounting
    if not total:
        return Finding(
            "kernel.swap",
            AREA,
            Severity.OK,
            "no swap" if total == 0 else "swap: unknown",
            "a memory ceiling holds the tree's RAM, and nothing can be pushed past it",
        )
    counted = "counted by the memory controller" if accounting else "not counted by cgroups"
    chosen = facts.chosen.name
    v2 = facts.cgroups.mode == "v2"
    if accounting and v2 and chosen in ("cgroup2", "systemd"):
        return Finding(
            "kernel.swap",
            AREA,
            Severity.OK,
            f"{format_size(total)} of swap, {counted}",
            "runs get memory.swap.max=0 (MemorySwapMax=0): the ceiling is RAM, and a "
            "runaway is OOM-killed at it instead of swapping the host to a halt",
        )
    return Finding(
        "kernel.swap",
        AREA,
        Severity.WARNING,
        f"{format_size(total)} of swap, {counted}",
        f"with {chosen} the memory ceiling holds RAM only: a runaway's excess goes to swap, "
        "and the host slows to a crawl before anything is killed",
        "swapoff -a while heavy workloads run (or a small swap)"
        + ("; boot with swapaccount=1 so the v1 controller counts swap" if not accounting else ""),
    )
