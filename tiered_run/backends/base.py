"""The contract every containment backend keeps, and the records it returns."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from tiered_run.spec import Limits


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


@dataclass(frozen=True)
class Usage:
    """One sample of the run's resource use; None where this backend cannot measure it."""

    memory: int | None = None
    memory_peak: int | None = None
    tasks: int | None = None
    tasks_peak: int | None = None
    cpu_s: float | None = None
    cpus_used: frozenset[int] | None = None
    oom_kills: int = 0
    tasks_refused: int = 0
    memory_high_events: int = 0


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
        """Every live process of the run."""

    @abstractmethod
    def kill(self, sig: int) -> None:
        """Send `sig` to every process of the run; SIGKILL is race-free where the kernel allows."""

    @abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Pause or resume the whole tree."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the container; the tree must already be gone. Safe to call twice."""

    def cleanup_stale(self) -> list[str]:
        """Remove containers left by a tiered-run that died; returns what was removed."""
        return []
