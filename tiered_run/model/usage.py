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


# With these the kernel itself holds the CPUs, the memory ceiling and the tasks ceiling of
# the whole tree: what `--backend auto` looks for first.
CONTAINING = frozenset({Capability.CPUSET, Capability.MEMORY_LIMIT, Capability.TASKS_LIMIT})


def memory_source(capabilities: frozenset[Capability]) -> str:
    """Where a run's peak memory comes from: the kernel's own peak counter, or samples."""
    return "kernel" if Capability.MEMORY_PEAK in capabilities else "sampled"


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
