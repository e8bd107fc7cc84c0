"""Synthetic records for tests that need a report or a host state but no run: one builder
each, with plausible defaults that a test overrides where it matters."""

from __future__ import annotations

from tiered_run.host.machine import HostState
from tiered_run.model.facts import (
    BackendFacts,
    CgroupFacts,
    CgroupMount,
    CpuFacts,
    Facts,
    KernelFacts,
    MemoryCeiling,
    OwnGroup,
    SystemdFacts,
    UnifiedGroup,
)
from tiered_run.model.report import HostSummary, Outcome, RunReport
from tiered_run.model.usage import Capability
from tiered_run.policy.exit_codes import EXIT_TIMEOUT

MiB = 1024**2
GiB = 1024**3


def make_report(**overrides: object) -> RunReport:
    """A run of `make -j4 test` that exited 0 within its ceilings, as a kernel backend
    reports it; any field can be overridden."""
    values: dict[str, object] = {
        "run_id": "run-1",
        "command": ("make", "-j4", "test"),
        "tier": "build",
        "backend": "cgroupfs",
        "backend_reason": "cgroup v2 delegated to this user",
        "outcome": Outcome.EXITED,
        "exit_code": 0,
        "returncode": 0,
        "signal": None,
        "message": "exited with code 0",
        "started_at": "2024-05-01T12:00:00+00:00",
        "wall_s": 8.02,
        "cpu_s": 15.9,
        "peak_memory_bytes": 412 * MiB,
        "peak_memory_source": "kernel",
        "peak_tasks": 17,
        "cpus": (4, 5, 6, 7),
        "cpus_seen": (4, 5),
        "leftover_killed": 0,
        "limits": {"timeout_s": 8.0, "memory_bytes": 2 * GiB, "tasks_max": 512},
        "enforced_by_kernel": ("memory", "tasks"),
        "memory_high_exceeded": False,
        "host": HostSummary(
            load1_start=0.5,
            load1_peak=3.1,
            load1_end=2.0,
            pressure_peak_pct=None,
            memory_available_min_bytes=8 * GiB,
        ),
        "log": None,
        "events": (),
        "ended_at": "2024-05-01T12:00:08+00:00",
        "hostname": "build-7",
        "tiered_run_version": "0.1.0",
    }
    values.update(overrides)
    return RunReport(**values)  # type: ignore[arg-type]


def outcome_report(outcome: Outcome, code: int, **overrides: object) -> RunReport:
    """A report that ended with `outcome` and exit code `code` (the workload's own return
    code where it exited by itself), for runners faked in ladder and calibration tests."""
    values: dict[str, object] = {
        "outcome": outcome,
        "exit_code": code,
        "returncode": code if outcome is Outcome.EXITED else None,
        "signal": None,
        "message": f"{outcome.value} {code}",
    }
    values.update(overrides)
    return make_report(**values)


def timeout_report(**overrides: object) -> RunReport:
    """A run SIGKILLed at its 8 s timeout."""
    values: dict[str, object] = {
        "outcome": Outcome.TIMEOUT,
        "exit_code": EXIT_TIMEOUT,
        "returncode": None,
        "signal": 9,
        "message": "timeout: still running at its 8 s timeout",
    }
    values.update(overrides)
    return make_report(**values)


def host_state(load1: float = 0.5, memory_available: int = 8 * GiB, **pressure: float) -> HostState:
    """One sample of the host: load, available memory, PSI `some avg10` by resource."""
    return HostState(load1=load1, memory_available=memory_available, pressure=pressure)


# -- machines as doctor reads them ----------------------------------------------------------

V1_MOUNTS = tuple(
    CgroupMount(f"/sys/fs/cgroup/{name}", 1, (name,))
    for name in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
)
V1_GROUPS = tuple(
    OwnGroup(name, "/", f"/sys/fs/cgroup/{name}", True, 0)
    for name in ("cpuset", "memory", "pids", "freezer", "cpuacct", "cpu", "blkio")
)
V1_CAPS = frozenset(
    {
        Capability.CPUSET,
        Capability.MEMORY_LIMIT,
        Capability.MEMORY_PEAK,
        Capability.TASKS_LIMIT,
        Capability.OOM_EVENTS,
        Capability.FREEZE,
        Capability.ATOMIC_KILL,
        # cpu and blkio mounted, with blk-throttle; no disk scheduled by bfq
        Capability.CPU_WEIGHT,
        Capability.CPU_QUOTA,
        Capability.IO_LIMIT,
        Capability.IO_STATS,
    }
)
V2_CAPS = (V1_CAPS - {Capability.MEMORY_PEAK}) | {
    Capability.MEMORY_HIGH,
    Capability.MEMORY_LOW,
    Capability.IO_WEIGHT,
}


def hybrid_cgroups(**overrides: object) -> CgroupFacts:
    """Ubuntu 20.04's layout as root: v1 controllers and a controller-less cgroup2."""
    values: dict[str, object] = {
        "mounts": (*V1_MOUNTS, CgroupMount("/sys/fs/cgroup/unified", 2)),
        "own": {"": "/", "memory": "/"},
        "v1": V1_GROUPS,
        "unified": UnifiedGroup("unified", "/", "/sys/fs/cgroup/unified", True, 0),
        "ceilings": (MemoryCeiling("/", None),),
        "swap_accounting": False,
    }
    values.update(overrides)
    return CgroupFacts(**values)  # type: ignore[arg-type]


def v2_cgroups(**overrides: object) -> CgroupFacts:
    """Debian 12's layout: one unified hierarchy; our group can hand down what runs need."""
    group = UnifiedGroup(
        "unified",
        "/system.slice/build.scope",
        "/sys/fs/cgroup/system.slice/build.scope",
        True,
        0,
        controllers=("cpu", "cpuset", "io", "memory", "pids"),
        subtree=("cpuset", "memory", "pids"),
        files=("memory.peak", "cgroup.kill", "cgroup.freeze", "memory.swap.max", "memory.max"),
    )
    values: dict[str, object] = {
        "mounts": (CgroupMount("/sys/fs/cgroup", 2),),
        "own": {"": group.path},
        "unified": group,
        "swap_accounting": True,
    }
    values.update(overrides)
    return CgroupFacts(**values)  # type: ignore[arg-type]


def backend_facts(chosen: str, capabilities: frozenset[Capability]) -> tuple[BackendFacts, ...]:
    """Probes where `chosen` works with `capabilities` and every backend before it does not."""
    order = ("systemd", "cgroup2", "cgroup1", "plain")
    found = []
    for name in order:
        if name == chosen:
            found.append(BackendFacts(name, True, f"{name} works", capabilities))
        elif order.index(name) < order.index(chosen):
            found.append(BackendFacts(name, False, f"{name} lacks something"))
        else:
            found.append(BackendFacts(name, True, f"{name} would work"))
    return tuple(found)


def make_facts(
    *,
    n_cpus: int = 4,
    backend: str = "cgroup1",
    capabilities: frozenset[Capability] = V1_CAPS,
    **overrides: object,
) -> Facts:
    """A root tiered-run on a hybrid machine without systemd, with `n_cpus` CPUs and 16 GiB,
    no swap, nothing isolated, no container engine; any field can be overridden."""
    online = tuple(range(n_cpus))
    values: dict[str, object] = {
        "euid": 0,
        "cgroups": hybrid_cgroups(),
        "systemd": SystemdFacts("tini", False, delegate_detail="systemd is not the init system"),
        "kernel": KernelFacts(
            release="6.1.0",
            psi=("cpu", "memory", "io"),
            swap_total=0,
            overcommit_memory=0,
            overcommit_ratio=50,
            panic_on_oom=0,
        ),
        "cpus": CpuFacts(online, online),
        "memory_total": 16 * GiB,
        "backends": backend_facts(backend, capabilities),
        "auto": backend,
        "auto_reason": f"{backend} works",
    }
    values.update(overrides)
    return Facts(**values)  # type: ignore[arg-type]
