"""The contract every containment backend keeps, and the records it returns."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tiered_run.errors import BackendError
from tiered_run.model.spec import Limits


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


class CleanupError(BackendError):
    """A cgroup could not be removed (or emptied); the run's result stands and the next start
    retries. Carries the directory, the operation and the errno for the report's warning."""

    def __init__(self, path: Path, operation: str, errno: int | None, detail: str) -> None:
        super().__init__(f"cannot {operation} cgroup {path}: {detail}")
        self.path = path
        self.operation = operation
        self.errno = errno
        self.detail = detail


class Backend(ABC):
    """One run's container. Lifecycle: create, attach (in the child), started, sample/kill, remove.

    `attach` runs in the forked child before exec, so it may only make system calls and
    write files: no locks, no threads, no logging.
    """

    name: ClassVar[str]
    capabilities: frozenset[Capability] = frozenset()

    @classmethod
    @abstractmethod
    def unusable_reason(cls) -> str | None:
        """None where this backend works on this machine, else why not (for `auto` and doctor)."""

    @abstractmethod
    def create(self, run_id: str, limits: Limits) -> None:
        """Make the container and apply the ceilings the kernel can enforce."""

    @abstractmethod
    def attach(self) -> None:
        """Move the calling (child) process into the container; runs before exec."""

    @abstractmethod
    def started(self, pid: int) -> None:
        """The workload's first process exists; verify or begin tracking it."""

    @abstractmethod
    def sample(self) -> Usage:
        """Current use of the whole tree; cost must not grow with its size where a cgroup exists."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every live process of the run, in cgroups its workload made below the run's too."""

    @abstractmethod
    def kill(self, sig: int) -> None:
        """Send `sig` to every process of the run, nested cgroups included; SIGKILL is
        race-free where the kernel allows."""

    @abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Pause or resume the whole tree."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the container, nested cgroups first; the tree must already be gone. Safe to
        call twice. Raises CleanupError when a cgroup stays busy: the next start retries."""

    def cleanup_stale(self) -> list[str]:
        """Kill and remove containers whose owner is positively gone; returns what was removed.
        Never raises and never waits long: what resists is left for the next start."""
        return []

    def exclude(self, pid: int) -> None:
        """`pid` is a helper of tiered-run's own (the watchdog), never part of the run; only a
        backend that finds the tree by walking processes needs to know."""
        return None

    def report_tree(self, callback: Callable[[list[tuple[int, int]]], object]) -> None:
        """Hand the tree's processes to `callback` as they are sampled; a backend that can
        kill through a cgroup has no need to (the watchdog kills the cgroup)."""
        return None
