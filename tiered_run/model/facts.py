"""What `doctor` knows about this machine: facts read by the thin readers in `host/`, with
no judgement in them. The findings (`policy.doctor`) are pure functions over these
records, so each can be tested on a synthetic machine: a hybrid Ubuntu 20.04 with a
login session, a container without systemd, a pure cgroup v2 Debian.

A fact that could not be read is None (unknown), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tiered_run.model.spec import Runtime
from tiered_run.model.usage import Capability


@dataclass(frozen=True)
class CgroupMount:
    """One mounted cgroup hierarchy; a v1 one with its controllers (`name=systemd` too)."""

    path: str
    version: int
    controllers: tuple[str, ...] = ()


@dataclass(frozen=True)
class OwnGroup:
    """tiered-run's own cgroup in one hierarchy: where it is and whether we may write there."""

    hierarchy: str  # a v1 controller, or "unified"
    path: str  # as /proc/self/cgroup gives it
    directory: str | None  # on the mount; None where it is not visible (another namespace)
    writable: bool
    owner: int | None = None


@dataclass(frozen=True)
class UnifiedGroup(OwnGroup):
    """Our cgroup in the unified (v2) hierarchy, with what delegation depends on."""

    controllers: tuple[str, ...] = ()  # cgroup.controllers: what it may hand down
    subtree: tuple[str, ...] = ()  # cgroup.subtree_control: what it hands down now
    others: tuple[int, ...] = ()  # other processes in it (the no-internal-process rule)
    files: tuple[str, ...] = ()  # which of memory.peak, cgroup.kill, cgroup.freeze... exist


@dataclass(frozen=True)
class MemoryCeiling:
    """A memory cgroup at or above ours: its ceiling and whether its OOM killer is off."""

    cgroup: str
    limit: int | None  # None: no ceiling
    oom_kill_disable: bool = False


@dataclass(frozen=True)
class CgroupFacts:
    mounts: tuple[CgroupMount, ...] = ()
    own: Mapping[str, str] = field(
        default_factory=dict
    )  # /proc/self/cgroup: hierarchy ("" = unified) -> path
    v1: tuple[OwnGroup, ...] = ()
    unified: UnifiedGroup | None = None
    ceilings: tuple[MemoryCeiling, ...] = ()  # ours first, then upwards
    cpuset: tuple[int, ...] | None = None  # the CPUs our cgroup allows
    swap_accounting: bool | None = None  # memory.memsw.* (v1) or memory.swap.max (v2)

    @property
    def v1_controllers(self) -> frozenset[str]:
        return frozenset(
            c for m in self.mounts if m.version == 1 for c in m.controllers if "=" not in c
        )

    @property
    def mode(self) -> str:
        """`v2` (unified), `hybrid` (v1 controllers and a cgroup2 mount), `v1`, or `none`."""
        has_v2 = any(m.version == 2 for m in self.mounts)
        if self.v1_controllers:
            return "hybrid" if has_v2 else "v1"
        return "v2" if has_v2 else "none"


@dataclass(frozen=True)
class SystemdFacts:
    pid1: str | None  # the command name of PID 1
    running: bool  # /run/systemd/system: systemd is the init system
    version: int | None = None
    unit_path: str | None = None  # our cgroup as systemd names it
    delegate: bool | None = None  # a transient scope with Delegate=yes worked; None: not tried
    delegate_detail: str = ""  # why it failed, or why it was not tried

    @property
    def session(self) -> str | None:
        """The login session scope we are in (`session-3.scope`), if any."""
        for part in (self.unit_path or "").split("/"):
            if part.startswith("session-") and part.endswith(".scope"):
                return part
        return None

    @property
    def user_slice(self) -> str | None:
        for part in (self.unit_path or "").split("/"):
            if part.startswith("user-") and part.endswith(".slice"):
                return part
        return None


@dataclass(frozen=True)
class KernelFacts:
    release: str = ""
    cmdline: str = ""
    psi: tuple[str, ...] = ()  # resources whose pressure can be read
    psi_problem: str | None = None  # why not (psi=0 on the command line, no /proc/pressure)
    swap_total: int | None = None
    overcommit_memory: int | None = None
    overcommit_ratio: int | None = None
    overcommit_kbytes: int | None = None
    panic_on_oom: int | None = None


@dataclass(frozen=True)
class CpuFacts:
    online: tuple[int, ...]
    allowed: tuple[int, ...]  # our own affinity: what a run started from here may get
    isolated: tuple[int, ...] = ()  # /sys/devices/system/cpu/isolated (isolcpus=)
    nohz_full: tuple[int, ...] = ()
    rcu_nocbs: tuple[int, ...] = ()
    isolcpus: str | None = None  # the isolcpus= parameter as given, if any


@dataclass(frozen=True)
class ProcessFacts:
    """One process of the host (kernel threads left out)."""

    pid: int
    comm: str
    uid: int
    cpu: int  # the CPU it last ran on
    allowed: tuple[int, ...]  # its affinity
    cgroup: str = ""  # its unified or name=systemd cgroup


@dataclass(frozen=True)
class ContainerEngine:
    """A container daemon or tool: where it runs and how it makes its containers' cgroups."""

    name: str  # dockerd, containerd, podman
    pid: int | None = None  # None: installed, no daemon running (podman has none)
    uid: int | None = None
    cgroup: str = ""
    allowed: tuple[int, ...] = ()
    cgroup_driver: str | None = None  # systemd or cgroupfs
    driver_source: str = ""  # where that was read, or `default`


@dataclass(frozen=True)
class RuntimeProbe:
    """A container runtime for `--container`: whether a run can use it, why (or why not),
    and what it told us."""

    runtime: Runtime
    usable: bool
    reason: str
    binary: str | None = None
    oci_runtime: str | None = None  # podman: the OCI runtime to ask for (runc on cgroup v1)
    cgroup_driver: str | None = None


@dataclass(frozen=True)
class BackendFacts:
    """What each backend's probe found, and what `--backend auto` chose and why."""

    name: str
    usable: bool
    reason: str
    capabilities: frozenset[Capability] = frozenset()


@dataclass(frozen=True)
class Facts:
    """Everything `doctor` read, in one record."""

    euid: int
    cgroups: CgroupFacts
    systemd: SystemdFacts
    kernel: KernelFacts
    cpus: CpuFacts
    memory_total: int
    processes: tuple[ProcessFacts, ...] = ()
    engines: tuple[ContainerEngine, ...] = ()
    runtimes: tuple[RuntimeProbe, ...] = ()  # for --container, podman first
    backends: tuple[BackendFacts, ...] = ()
    auto: str = "plain"  # the backend `auto` picks
    auto_reason: str = ""
    interval: float = 0.25
    self_pids: frozenset[int] = field(default_factory=frozenset)  # doctor itself

    def backend(self, name: str) -> BackendFacts | None:
        return next((b for b in self.backends if b.name == name), None)

    @property
    def chosen(self) -> BackendFacts:
        found = self.backend(self.auto)
        return found if found is not None else BackendFacts(self.auto, True, self.auto_reason)
