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
class BlockDevice:
    """A whole disk, as the kernel's I/O throttles name it (`MAJ:MIN`, see
    /sys/dev/block/): io.max and blkio.throttle.* take whole disks, so a partition or a
    path stands for the disk it lies on. `name` is the disk's (`vda`), for people."""

    major: int
    minor: int
    name: str

    @property
    def spec(self) -> str:
        return f"{self.major}:{self.minor}"

    @property
    def node(self) -> str:
        """Its device node, which devtmpfs names as the kernel does; systemd and Docker
        take a path (Docker's parser splits at `:`, so not /dev/block/MAJ:MIN)."""
        return f"/dev/{self.name}"

    def __str__(self) -> str:
        return f"{self.name} ({self.spec})"


@dataclass(frozen=True)
class Limits:
    """Ceilings for one run's whole process tree; None means no ceiling.

    One field for each setting of the table in `inputs.settings` that reaches a run, with
    the table's default; the table also gives each its key in the report and what enforces
    it. Written out, typed, for the engine and the backends that read it; a test keeps the
    fields in step with the table.
    """

    cpus: tuple[int, ...]
    timeout: float | None = None
    kill_after: float = 2.0
    stop_signal: int = signal.SIGTERM  # the first signal of a graceful end
    memory: int | None = None
    memory_high: int | None = None
    tasks_max: int | None = None
    load_max: float | None = None
    pressure_max: float | None = None
    on_load: OnLoad = OnLoad.WARN
    nice: int | None = None
    cpu_weight: int | None = None  # systemd's scale, 1-10000 (100: the kernel's default)
    cpu_quota: float | None = None  # percent of one CPU, as systemd's CPUQuota=
    io_weight: int | None = None  # systemd's scale, 1-10000
    io_read_max: int | None = None  # bytes/s on io_device
    io_write_max: int | None = None
    io_read_iops_max: int | None = None
    io_write_iops_max: int | None = None
    io_device: BlockDevice | None = None  # where the four above apply
    memory_low: int | None = None  # protected from reclaim while others hold reclaimable memory

    @property
    def io_max(self) -> dict[str, int]:
        """The I/O throttles that are set, by io.max's key (rbps, wbps, riops, wiops)."""
        pairs = (
            ("rbps", self.io_read_max),
            ("wbps", self.io_write_max),
            ("riops", self.io_read_iops_max),
            ("wiops", self.io_write_iops_max),
        )
        return {key: value for key, value in pairs if value is not None}

    def as_dict(self) -> dict[str, object]:
        """The report's `limits`, under the table's keys (`timeout_s`, `memory_bytes`)."""
        # Imported here: the table imports this module for OnLoad.
        from tiered_run.inputs.settings import limits_json

        return limits_json(self)


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


class Runtime(enum.Enum):
    """A container runtime that can place a container inside the run's cgroups."""

    PODMAN = "podman"  # daemonless: the container is made by a child of the run
    DOCKER = "docker"  # a daemon makes it; with the cgroupfs driver, below --cgroup-parent


@dataclass(frozen=True)
class ContainerSpec:
    """The workload runs as COMMAND in a container of `image`, made by `runtime` inside the
    run's cgroups, so the run's ceilings, monitor and kill reach every process of it.

    The tier maps onto it: its CPUs and user, the working directory (mounted at the same
    path with `mount_cwd`), the `--env` variables; no network unless `network`."""

    image: str
    runtime: Runtime
    runtime_reason: str  # why this runtime: said in the report
    binary: str  # the runtime's client
    oci_runtime: str | None = None  # podman's --runtime (runc on cgroup v1)
    network: bool = False
    mount_cwd: bool = True
    env: dict[str, str] = field(default_factory=dict)  # only what --env gave
    user: UserSpec | None = None
    cwd: Path | None = None  # inside the container; the current directory by default
    private_tmp: bool = False


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
    interval: float = 0.25  # the table's default (inputs.settings), kept in step by a test
    log: Path | None = None
    protected_cpus: tuple[int, ...] = ()
    privileges: Privileges = field(default_factory=Privileges)
    # --before-kill: run at a breach before the first ending signal; `{pid}` and `{cgroup}`
    # are filled in then (engine.before_kill). Empty: nothing runs.
    before_kill: tuple[str, ...] = ()
    # --container IMAGE: the command runs in a container made inside the run's cgroups.
    container: ContainerSpec | None = None
    # --private-tmp: /tmp and /dev/shm of the workload are its own, gone with the run.
    private_tmp: bool = False
    # What the plan let through but the user should know: an override of the tier's host
    # reserve, a run on protected CPUs allowed by the flag. Every report repeats them.
    warnings: tuple[str, ...] = ()
