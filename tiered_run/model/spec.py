"""Records describing what to run and under which ceilings."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from pathlib import Path


class OnLoad(enum.Enum):
    """What a breach of the host load ceiling does to the run."""

    WARN = "warn"
    PAUSE = "pause"
    KILL = "kill"


@dataclass(frozen=True)
class Limits:
    """Ceilings for one run's whole process tree; None means no ceiling."""

    cpus: tuple[int, ...]
    timeout: float | None = None
    kill_after: float = 2.0
    stop_signal: int = signal.SIGTERM  # the first signal of a graceful end (`--signal`)
    memory: int | None = None
    memory_high: int | None = None
    tasks_max: int | None = None
    load_max: float | None = None
    pressure_max: float | None = None
    on_load: OnLoad = OnLoad.WARN
    nice: int | None = None
    cpu_weight: int | None = None  # applied where systemd manages the run
    io_weight: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "cpus": list(self.cpus),
            "timeout_s": self.timeout,
            "kill_after_s": self.kill_after,
            "stop_signal": signal.Signals(self.stop_signal).name,
            "memory_bytes": self.memory,
            "memory_high_bytes": self.memory_high,
            "tasks_max": self.tasks_max,
            "load_max": self.load_max,
            "pressure_max_pct": self.pressure_max,
            "on_load": self.on_load.value,
            "nice": self.nice,
            "cpu_weight": self.cpu_weight,
            "io_weight": self.io_weight,
        }


@dataclass(frozen=True)
class UserSpec:
    """An account to run the workload as, resolved like `su - NAME` would."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


@dataclass(frozen=True)
class Privileges:
    """What a workload gives up before exec, for one that runs as root and does not need
    what it gives up (see `privileges.restrict`)."""

    # PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities no longer raise privileges.
    no_new_privileges: bool = False
    # Capabilities that could undo the run's limits leave the bounding set, the cgroup
    # filesystems are read-only in a mount namespace of its own, and user namespaces
    # (which would hand those capabilities back) cannot be created.
    drop_caps: bool = False

    def __bool__(self) -> bool:
        return self.no_new_privileges or self.drop_caps


@dataclass(frozen=True)
class RunSpec:
    """Everything one guarded run needs, validated before anything starts."""

    command: tuple[str, ...]
    limits: Limits
    tier: str | None = None
    user: UserSpec | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    backend: str = "auto"
    interval: float = 0.2
    log: Path | None = None
    protected_cpus: tuple[int, ...] = ()
    privileges: Privileges = field(default_factory=Privileges)
    # What the plan let through but the user should know: an override of the tier's host
    # reserve, a run on protected CPUs allowed by the flag. Every report repeats them.
    warnings: tuple[str, ...] = ()
