"""The contract every containment backend keeps: a cached probe, a run's life, the cleanup.

The records a backend returns (`Usage`, `Capability`...) live in `model.usage`, since the
whole program reads them. What is here is what only backends and their callers need: the
probe that says whether a backend can work on this machine, and the lifecycle of one run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tiered_run.errors import BackendError

if TYPE_CHECKING:
    from tiered_run.backends.news import KernelNews
from tiered_run.model.spec import Limits
from tiered_run.model.usage import CONTAINING, Capability, Usage


@dataclass(frozen=True)
class Probe:
    """What a backend found on this machine: whether it can work, why (what it offers, or
    what it lacks) and the capabilities a run would get from it. A run's backend may end
    up with fewer (a controller the kernel refuses at create): `Backend.capabilities` of
    the created run is what counts."""

    usable: bool
    reason: str
    capabilities: frozenset[Capability] = frozenset()

    @property
    def problem(self) -> str | None:
        return None if self.usable else self.reason

    @property
    def containing(self) -> bool:
        """Whether the kernel would hold every hard ceiling (CPUs, memory, tasks)."""
        return self.usable and self.capabilities >= CONTAINING


# One probe per backend class and process: probing may make and remove a cgroup, and a
# ladder starts many runs. The machine does not change its cgroup layout under a run.
_PROBES: dict[type, Probe] = {}


def os_failure(
    err: OSError,
    operation: str,
    path: Path | str,
    *,
    target: str | None = None,
    detail: str | None = None,
) -> BackendError:
    """An OSError met on a cgroup file or directory, as the BackendError that keeps its path,
    operation and errno: `cannot OPERATION TARGET: DETAIL` (TARGET: `cgroup PATH`; DETAIL:
    the errno's text). Raise it `from err`."""
    return BackendError(
        f"cannot {operation} {target or f'cgroup {path}'}: {detail or err.strerror}",
        path=path,
        operation=operation,
        errno=err.errno,
    )


class CleanupError(BackendError):
    """A cgroup could not be removed (or emptied); the run's result stands and the next start
    retries. Carries the directory, the operation and the errno for the report's warning."""

    def __init__(self, path: Path | str, operation: str, errno: int | None, detail: str) -> None:
        super().__init__(
            f"cannot {operation} cgroup {path}: {detail}",
            path=path,
            operation=operation,
            errno=errno,
        )
        self.detail = detail


class Backend(ABC):
    """One run's container. Lifecycle: create, attach (in the child), started, sample/kill, remove.

    `attach` runs in the forked child before exec, so it may only make system calls and
    write files: no locks, no threads, no logging.
    """

    name: ClassVar[str]
    capabilities: frozenset[Capability] = frozenset()

    # -- what this machine offers, asked once per process -------------------------------------

    @classmethod
    def probe(cls) -> Probe:
        """Whether this backend works here, why, and what it would enforce; cached."""
        found = _PROBES.get(cls)
        if found is None:
            found = _PROBES[cls] = cls._probe()
        return found

    @classmethod
    @abstractmethod
    def _probe(cls) -> Probe:
        """Find out, uncached: may make and remove a cgroup."""

    @classmethod
    def offered(cls) -> frozenset[Capability]:
        """The capabilities a run would get, where that can be told without the full probe
        (which may make a cgroup); a backend without a cheaper answer probes."""
        return cls.probe().capabilities

    @classmethod
    def unusable_reason(cls) -> str | None:
        """None where this backend works on this machine, else why not."""
        return cls.probe().problem

    def describe(self, reason: str) -> str:
        """The probe's reason with what this instance adds to it (systemd: the tier's slice)."""
        return reason

    # -- one run ----------------------------------------------------------------------------

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

    def cgroup_path(self) -> Path | None:
        """The run's cgroup directory, for `--before-kill`'s `{cgroup}`; None without one."""
        return None

    def news(self) -> KernelNews | None:
        """After `create`: new descriptors on which the kernel announces a run's OOM kills
        and refused forks (see backends.news), the caller's to close before `remove`;
        None where nothing is announced, and the monitor samples at its interval."""
        return None

    def unified_path(self) -> Path | None:
        """The run's directory in the cgroup2 hierarchy (hybrid or pure v2), where a
        container runtime is told to nest the container; None without one."""
        return None

    # -- runs whose tiered-run died ---------------------------------------------------------

    def stale_parents(self) -> list[Path]:
        """The directories this backend makes run cgroups in, where dead runs are looked for."""
        return []

    def cleanup_stale(self) -> list[str]:
        """Kill and remove the runs whose owner is positively gone; returns what was removed.
        Never raises and never waits long: what resists is left for the next start. Called
        at every start and by a watchdog whose tiered-run died."""
        from tiered_run.backends.stale import sweep  # stale imports cgroupfs, which imports us

        try:
            parents = self.stale_parents()
        except (BackendError, OSError):
            return []
        return sweep(parents)

    def exclude(self, pid: int) -> None:
        """`pid` is a helper of tiered-run's own (the watchdog), never part of the run; only a
        backend that finds the tree by walking processes needs to know."""
        return None

    def report_tree(self, callback: Callable[[list[tuple[int, int]]], object]) -> None:
        """Hand the tree's processes to `callback` as they are sampled; a backend that can
        kill through a cgroup has no need to (the watchdog kills the cgroup)."""
        return None
