"""What a backend measures and what its kernel enforces: records the whole program reads.

A backend returns `Usage` samples and declares `Capability`s; the monitor folds the samples
into peaks, the breach policy reads both, and the report says how each figure was
obtained. Keeping them here, without I/O, lets every one of those read them without
importing a backend.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Capability(enum.Enum):
    """What the kernel enforces or records for a backend; the rest the monitor does."""

    CPUSET = "cpuset"  # the tree cannot leave its CPUs, even with sched_setaffinity
    MEMORY_LIMIT = "memory-limit"  # hard memory ceiling enforced by the kernel
    MEMORY_HIGH = "memory-high"  # soft ceiling throttles instead of only warning
    MEMORY_PEAK = "memory-peak"  # exact peak recorded by the kernel, not sampled
    TASKS_LIMIT = "tasks-limit"  # fork/clone refused at the ceiling
    OOM_EVENTS = "oom-events"  # kernel OOM kills inside the run are counted
    FREEZE = "freeze"  # the whole tree can be paused at once
    ATOMIC_KILL = "atomic-kill"  # one write kills every task, no fork race
    CPU_WEIGHT = "cpu-weight"  # the run's CPU share against its siblings (cpu.weight/shares)
    CPU_QUOTA = "cpu-quota"  # CPU time per period, throttled beyond (cpu.max/cfs_quota_us)
    IO_WEIGHT = "io-weight"  # the run's I/O share, where the device's scheduler honours it
    IO_LIMIT = "io-limit"  # bytes/s and IOPS per device (io.max, blkio.throttle.*)
    MEMORY_LOW = "memory-low"  # memory the kernel reclaims from others first (memory.low)
    IO_STATS = "io-stats"  # the kernel counts the subtree's block I/O (io.stat, blkio)


# With these the kernel itself holds the CPUs, the memory ceiling and the tasks ceiling of
# the whole tree: what `--backend auto` looks for first.
CONTAINING = frozenset({Capability.CPUSET, Capability.MEMORY_LIMIT, Capability.TASKS_LIMIT})

# Ceilings only the kernel can hold: a monitor cannot share out CPU or I/O, throttle a
# device or protect memory from reclaim. Without the capability they are not applied, and
# the report and doctor say so.
KERNEL_ONLY = frozenset(
    {
        Capability.CPU_WEIGHT,
        Capability.CPU_QUOTA,
        Capability.IO_WEIGHT,
        Capability.IO_LIMIT,
        Capability.MEMORY_LOW,
    }
)


def memory_source(capabilities: frozenset[Capability]) -> str:
    """Where a run's peak memory comes from: the kernel's own peak counter, or samples."""
    return "kernel" if Capability.MEMORY_PEAK in capabilities else "sampled"


def io_source(capabilities: frozenset[Capability]) -> str:
    """Where a run's I/O figures come from: the cgroup's counters, or walks of the tree."""
    return "kernel" if Capability.IO_STATS in capabilities else "sampled"


def memory_method(capabilities: frozenset[Capability], interval: float) -> str:
    """How the peak memory was obtained, in words, for the report (what calibrate builds on)."""
    every = f"every {interval:g} s"
    if Capability.MEMORY_PEAK in capabilities:
        return "the kernel's peak for the run's cgroup (page cache included)"
    if Capability.MEMORY_LIMIT in capabilities:
        return f"the cgroup's current use sampled {every} (page cache included)"
    return (
        f"PSS of the tree's processes sampled {every} (shared pages counted once), "
        "at least the main process's peak RSS (wait4)"
    )


class OomSite(enum.Enum):
    """Whose memory ceiling made the kernel OOM-kill processes of the run."""

    OWN = "own"  # the run's own ceiling
    ENCLOSING = "enclosing"  # a ceiling above the run (an enclosing run, a container), or the host


@dataclass(frozen=True)
class Ceiling:
    """A memory ceiling above the run: its cgroup (relative to the mount) and size."""

    cgroup: str
    limit: int | None


@dataclass(frozen=True)
class MemorySplit:
    """What a memory figure is made of, in bytes (memory.stat; smaps_rollup's Pss_* lines
    for sampled backends): anonymous memory, page cache (without shared memory), shared
    memory (tmpfs, /dev/shm, which the kernel counts as cache) and kernel memory.

    Page cache is reclaimed under pressure and is not what takes a machine down; the rest
    cannot be reclaimed without swap, which is what a ceiling has to leave room for.
    """

    anon: int
    file: int
    shmem: int
    kernel: int | None = None  # None where it cannot be told (sampled backends)

    @property
    def unreclaimable(self) -> int:
        return self.anon + self.shmem + (self.kernel or 0)

    def to_dict(self) -> dict[str, int | None]:
        return {
            "anon_bytes": self.anon,
            "file_bytes": self.file,
            "shmem_bytes": self.shmem,
            "kernel_bytes": self.kernel,
        }


@dataclass(frozen=True)
class IoCounts:
    """Block I/O of the whole tree since the run began: bytes and operations that reached
    a device (cgroup v2 io.stat rbytes/wbytes/rios/wios; v1
    blkio.throttle.io_service_bytes_recursive and io_serviced_recursive; read_bytes and
    write_bytes of /proc/PID/io for a walked tree, which counts no operations). Page-cache
    hits are not I/O; buffered writes count when written back. A direction is None where it
    cannot be told (see `blkio_known`)."""

    read_bytes: int | None = 0
    write_bytes: int | None = 0
    read_ops: int | None = None
    write_ops: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
            "read_ops": self.read_ops,
            "write_ops": self.write_ops,
        }


@dataclass(frozen=True)
class Stalls:
    """Time some task of the run's cgroup stalled waiting for a resource, in seconds (PSI
    `some total=` of cpu.pressure, memory.pressure, io.pressure in the run's own cgroup2
    directory); None where the file is missing or PSI is off."""

    cpu: float | None = None
    memory: float | None = None
    io: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"cpu_s": self.cpu, "memory_s": self.memory, "io_s": self.io}


@dataclass(frozen=True)
class Usage:
    """One sample of the run's resource use; None where this backend cannot measure it.

    `oom_kills` counts the processes of the whole tree (nested cgroups included) that the
    kernel OOM-killed at this run's ceiling or at one above it; kills at a ceiling inside
    the run (a nested run's own) are that run's outcome, not this one's. `oom_site` says
    which, and `oom_ceiling` names the enclosing ceiling where it could be found.
    """

    memory: int | None = None
    memory_peak: int | None = None
    tasks: int | None = None
    tasks_peak: int | None = None
    cpu_s: float | None = None
    cpus_used: frozenset[int] | None = None
    oom_kills: int = 0
    tasks_refused: int = 0
    memory_high_events: int = 0
    oom_site: OomSite = OomSite.OWN
    oom_ceiling: Ceiling | None = None
    memory_split: MemorySplit | None = None
    io: IoCounts | None = None  # cumulative since the start
    cpu_throttled_s: float | None = None  # time the quota held the run back, cumulative
    stalls: Stalls | None = None  # cumulative
