"""What holds each ceiling with a given backend: the kernel, tiered-run's monitor, tiered-run
by design, or nothing. The settings table says which capability holds which ceiling
(`Setting.kernel`); the backend's probe says which capabilities it has here. A ceiling only
the kernel can hold (`KERNEL_ONLY`: weights, a quota, I/O throttles, memory_low) is not
applied at all where the backend has no controller for it.
"""

from __future__ import annotations

from tiered_run.inputs.settings import LIMITS, Setting
from tiered_run.model.facts import BackendFacts
from tiered_run.model.findings import Guard
from tiered_run.model.usage import KERNEL_ONLY, Capability

# How a run ends, not a ceiling: left out of the ceilings doctor weighs.
ENDING = frozenset({"kill_after", "stop_signal", "on_load"})
CEILINGS: tuple[Setting, ...] = tuple(s for s in LIMITS if s.name not in ENDING)

# The kernel's file, or systemd's property, that holds a ceiling.
_V2_FILES = {
    Capability.CPUSET: "cpuset.cpus",
    Capability.MEMORY_LIMIT: "memory.max",
    Capability.MEMORY_HIGH: "memory.high",
    Capability.TASKS_LIMIT: "pids.max",
    Capability.CPU_WEIGHT: "cpu.weight",
    Capability.CPU_QUOTA: "cpu.max",
    Capability.IO_WEIGHT: "io.weight (io.bfq.weight with bfq)",
    Capability.IO_LIMIT: "io.max",
    Capability.MEMORY_LOW: "memory.low",
}
_V1_FILES = {
    Capability.CPUSET: "cpuset.cpus",
    Capability.MEMORY_LIMIT: "memory.limit_in_bytes",
    Capability.MEMORY_HIGH: "memory.high",
    Capability.TASKS_LIMIT: "pids.max",
    Capability.CPU_WEIGHT: "cpu.shares",
    Capability.CPU_QUOTA: "cpu.cfs_quota_us",
    Capability.IO_WEIGHT: "blkio.weight (blkio.bfq.weight with bfq)",
    Capability.IO_LIMIT: "blkio.throttle.*_device",
    Capability.MEMORY_LOW: "memory.low",
}
_SYSTEMD_PROPERTIES = {
    Capability.CPUSET: "AllowedCPUs=",
    Capability.MEMORY_LIMIT: "MemoryMax=",
    Capability.MEMORY_HIGH: "MemoryHigh=",
    Capability.TASKS_LIMIT: "TasksMax=",
    Capability.CPU_WEIGHT: "CPUWeight=",
    Capability.CPU_QUOTA: "CPUQuota=",
    Capability.IO_WEIGHT: "IOWeight=",
    Capability.IO_LIMIT: "IOReadBandwidthMax= and the like",
    Capability.MEMORY_LOW: "MemoryLow=",
}
# What a missing controller means for a ceiling only the kernel can hold.
_MISSING = {
    Capability.CPU_WEIGHT: "no cpu controller for the run",
    Capability.CPU_QUOTA: "no cpu controller for the run",
    Capability.IO_WEIGHT: "no I/O weight file for the run (io.weight needs io.cost, "
    "io.bfq.weight and blkio.bfq.weight the bfq scheduler)",
    Capability.IO_LIMIT: "no io (v2) or blkio (v1) controller for the run",
    Capability.MEMORY_LOW: "no memory.low for the run (cgroup v2 with the memory controller)",
}
# Ceilings with no kernel capability: tiered-run holds them by design, nothing else could.
_OWN = {
    "timeout": "tiered-run's timer: the ending signal to the whole tree, SIGKILL after kill_after",
    "nice": "setpriority before exec; the kernel's scheduler honours it",
    "load_max": "the monitor: a host ceiling, which only a watcher can hold",
    "pressure_max": "the monitor: a host ceiling, which only a watcher can hold",
}


def guard(
    setting: Setting, backend: BackendFacts, hybrid: bool, interval: float
) -> tuple[Guard, str]:
    """What holds `setting` with `backend` here, and how, in words."""
    if setting.kernel in KERNEL_ONLY and setting.kernel not in backend.capabilities:
        return Guard.NOT_APPLIED, f"not applied with {backend.name}: {_MISSING[setting.kernel]}"
    if setting.kernel is None:
        return Guard.TIERED_RUN, _OWN.get(setting.name, "tiered-run")
    if setting.kernel in backend.capabilities:
        return Guard.KERNEL, _kernel_file(setting.kernel, backend.name, hybrid)
    if setting.kernel is Capability.CPUSET:
        return Guard.AFFINITY, (
            "CPU affinity set before exec; a process of the tree may widen its own "
            "(sched_setaffinity), which no cpuset stops"
        )
    if setting.kernel is Capability.MEMORY_HIGH:
        return Guard.MONITOR, "the monitor warns when the tree passes it; nothing throttles it"
    return Guard.MONITOR, (
        f"the monitor, every {interval:g} s: the tree can overshoot between two samples"
    )


def _kernel_file(capability: Capability, backend: str, hybrid: bool) -> str:
    if backend == "systemd" and not (hybrid and capability is Capability.CPUSET):
        # On a hybrid machine systemd's weights and throttles go to its v1 groups.
        return f"{_SYSTEMD_PROPERTIES[capability]} on the run's scope"
    if backend == "cgroup1" or (backend == "systemd" and hybrid):
        return f"cgroup v1 {_V1_FILES[capability]}"
    return f"cgroup v2 {_V2_FILES[capability]}"


def kernel_ceilings() -> tuple[Setting, ...]:
    """The ceilings a kernel capability can hold: what a backend is judged by."""
    return tuple(s for s in CEILINGS if s.kernel is not None)
