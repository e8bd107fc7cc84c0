"""cgroup v1 (legacy or hybrid): one transient group per controller hierarchy.

cgroupspy handles the files it knows (cpuset, memory, cpuacct); pids and freezer are
plain files. On hybrid machines the controller-less cgroup2 mount is joined too: it
gives a race-free `cgroup.kill` of the whole subtree, `cgroup.freeze` and an exact list of
the tree. Without it, the freezer (which freezes descendants too) stops forks while every
process of the subtree is killed.

The cpu and blkio hierarchies are joined where they are mounted and ours is writable: they
hold the weights, the CPU quota and the I/O throttles, and blkio counts the tree's I/O.
Without them a run still has its hard ceilings, and the report lists the rest as not applied.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cgroupspy.controllers import CpuSetController, MemoryController
from cgroupspy.nodes import Node

from tiered_run.backends import oom
from tiered_run.backends.base import Backend, CleanupError, Probe
from tiered_run.backends.cgroupfs import (
    PREFIX,
    REMOVE_WAIT_S,
    CgroupDir,
    Mount,
    kill_until_empty,
    nested_refusals,
    own_cgroups,
    own_dir,
    system_mounts,
)
from tiered_run.backends.news import KernelNews, news_v1
from tiered_run.backends.ownership import Owned, claim
from tiered_run.backends.shares import (
    CFS_PERIOD_US,
    bfq_weight,
    blkio_known,
    blkio_weight,
    blkio_weight_file,
    cpu_shares,
    optional_capabilities,
    parse_blkio,
    psi_total_s,
    quota_us,
    v1_throttles,
)
from tiered_run.errors import BackendError
from tiered_run.host.heldfiles import HeldFiles
from tiered_run.host.processes import is_alive
from tiered_run.inputs.units import format_cpus
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability, IoCounts, MemorySplit, Stalls, Usage

CONTROLLERS = ("cpuset", "memory", "pids", "freezer", "cpuacct")
OPTIONAL = ("cpu", "blkio")


def _parents(mounts: list[Mount], own: dict[str, str]) -> tuple[dict[str, Path], Path | None]:
    """Our own cgroup dir per v1 controller (the optional ones only where writable), and in
    the cgroup2 mount when it is usable."""
    parents = {}
    unified = None
    for mount in mounts:
        if mount.version == 1:
            for controller in sorted(mount.controllers & {*CONTROLLERS, *OPTIONAL}):
                path = own_dir(mount, own, controller)
                if controller in OPTIONAL and not os.access(path, os.W_OK):
                    continue
                parents.setdefault(controller, path)
        elif os.access(candidate := own_dir(mount, own), os.W_OK):
            unified = candidate
    return parents, unified


# Read at every monitor sample (through HeldFiles: cgroupspy opens each file every time).
_SAMPLED = {
    "memory": (
        "memory.usage_in_bytes",
        "memory.max_usage_in_bytes",
        "memory.oom_control",
        "memory.failcnt",
        "memory.stat",
        "memory.kmem.usage_in_bytes",
    ),
    "pids": ("pids.current", "pids.peak", "pids.events"),
    "cpuacct": ("cpuacct.usage_percpu",),
    "cpu": ("cpu.stat",),
    "blkio": (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_serviced_recursive",
    ),
    # A cgroup2 directory has PSI files whether or not it has controllers.
    "unified": ("cpu.pressure", "memory.pressure", "io.pressure"),
}

_V1_CAPABILITIES = frozenset(
    {
        Capability.CPUSET,
        Capability.MEMORY_LIMIT,
        Capability.MEMORY_PEAK,
        Capability.TASKS_LIMIT,
        Capability.OOM_EVENTS,
        Capability.FREEZE,
    }
)


def v1_split(stat: dict[str, int], kmem: int | None) -> MemorySplit | None:
    """memory.stat of cgroup v1, whole subtree (`total_*`): `cache` includes shmem; the
    kernel memory is memory.kmem.usage_in_bytes, which usage_in_bytes includes."""
    if "total_rss" not in stat:
        return None
    shmem = stat.get("total_shmem", 0)
    cache = stat.get("total_cache", 0)
    return MemorySplit(stat["total_rss"], max(0, cache - shmem), shmem, kmem)


class Cgroup1Backend(Backend):
    name = "cgroup1"

    def __init__(
        self,
        mounts: list[Mount] | None = None,
        own: dict[str, str] | None = None,
        owned_above: int = 0,
    ) -> None:
        """`owned_above`: how many memcgs above the run's are part of it (a systemd scope)."""
        self._parents, self._unified_parent = _parents(
            system_mounts() if mounts is None else mounts, own_cgroups() if own is None else own
        )
        self._dirs: dict[str, CgroupDir] = {}
        self._owned: list[Owned] = []
        self._counters: dict[str, HeldFiles] | None = None
        self._nested_refused: dict[Path, int] = {}
        self._kill_file = False
        self._ancestors = oom.Ancestors(oom.v1_failcnt, oom.v1_limit, owned_above)
        self._oom_events: oom.OomEvents | None = None
        self._limits: Limits | None = None
        self.capabilities = _V1_CAPABILITIES

    @classmethod
    def _probe(cls) -> Probe:
        """Every controller mounted and our cgroup in each writable; a cheap check, no mkdir."""
        try:
            mounts = system_mounts()
            if not any(m.version == 1 for m in mounts):
                return Probe(False, "no cgroup v1 hierarchies are mounted")
            parents, unified = _parents(mounts, own_cgroups())
        except (BackendError, OSError) as err:
            return Probe(False, str(err))
        missing = [c for c in CONTROLLERS if c not in parents]  # OPTIONAL ones may be missing
        if missing:
            return Probe(False, f"cgroup v1 controllers not mounted: {', '.join(missing)}")
        locked = [c for c, p in parents.items() if not os.access(p, os.W_OK)]
        if locked:
            return Probe(
                False,
                f"no write access to our cgroup in {', '.join(locked)} (needs root or delegation)",
            )
        caps = _V1_CAPABILITIES | optional_capabilities(parents)
        if unified is None:
            return Probe(True, "cgroup v1 controllers", caps)
        kill = (unified / "cgroup.kill").exists()
        return Probe(
            True,
            "cgroup v1 controllers (hybrid: cgroup2 mount used for kill and freeze)",
            caps | ({Capability.ATOMIC_KILL} if kill else set()),
        )

    # -- lifecycle -------------------------------------------------------------------------

    def cgroup_path(self) -> Path | None:
        """The memory controller's group: where a look at a breach finds the most."""
        group = self._dirs.get("memory")
        return group.path if group is not None else None

    def news(self) -> KernelNews | None:
        return news_v1(self._dirs["memory"].path) if "memory" in self._dirs else None

    def unified_path(self) -> Path | None:
        group = self._dirs.get("unified")
        return group.path if group is not None else None

    def create(self, run_id: str, limits: Limits) -> None:
        name = PREFIX + run_id
        # Ordered as CONTROLLERS: attach() joins cpuset first.
        keys = [*CONTROLLERS, *(c for c in OPTIONAL if c in self._parents)]
        groups = {c: CgroupDir(self._parents[c] / name) for c in keys}
        if self._unified_parent is not None:
            groups["unified"] = CgroupDir(self._unified_parent / name)
        made: dict[Path, CgroupDir] = {}
        for key, group in groups.items():
            if group.path not in made:  # co-mounted controllers (cpu,cpuacct) share a group
                self._owned.append(claim(group.path))
                made[group.path] = group
            self._dirs[key] = made[group.path]
        self._ancestors.record(self._parents["memory"])
        self._oom_events = oom.OomEvents(self._dirs["memory"])
        self._kill_file = "unified" in groups and (groups["unified"].path / "cgroup.kill").exists()
        self.capabilities = (
            _V1_CAPABILITIES
            | optional_capabilities({key: group.path for key, group in self._dirs.items()})
            | ({Capability.ATOMIC_KILL} if self._kill_file else set())
        )
        self._limits = limits
        self._configure(limits)

    def _configure(self, limits: Limits) -> None:
        cpuset = CpuSetController(_node(self._dirs["cpuset"].path))
        parent_cpuset = CpuSetController(_node(self._parents["cpuset"]))
        allowed = parent_cpuset.cpus
        outside = sorted(set(limits.cpus) - allowed)
        if outside:
            raise BackendError(
                f"CPUs {format_cpus(outside)} are outside tiered-run's own cpuset "
                f"({format_cpus(sorted(allowed))}); choose CPUs within it",
                path=self._parents["cpuset"] / "cpuset.cpus",
                operation="confine",
            )
        cpuset.mems = parent_cpuset.mems
        cpuset.cpus = set(limits.cpus)
        memory = MemoryController(_node(self._dirs["memory"].path))
        if limits.memory is not None:
            memory.limit_in_bytes = limits.memory
        if limits.memory_high is not None:
            memory.soft_limit_in_bytes = limits.memory_high
        if limits.tasks_max is not None:
            self._dirs["pids"].write("pids.max", limits.tasks_max)
        self._configure_shares(limits)

    def _configure_shares(self, limits: Limits) -> None:
        """Weights, the CPU quota and the I/O throttles, where the run has their groups
        (`capabilities` says which; the rest the report lists as not applied)."""
        caps, cpu, blkio = self.capabilities, self._dirs.get("cpu"), self._dirs.get("blkio")
        if cpu is not None and Capability.CPU_WEIGHT in caps and limits.cpu_weight is not None:
            cpu.write("cpu.shares", cpu_shares(limits.cpu_weight))
        if cpu is not None and Capability.CPU_QUOTA in caps and limits.cpu_quota is not None:
            cpu.write("cpu.cfs_period_us", CFS_PERIOD_US)
            cpu.write("cpu.cfs_quota_us", quota_us(limits.cpu_quota))
        if blkio is None:
            return
        weight_file = blkio_weight_file(blkio.path)
        if weight_file is not None and limits.io_weight is not None:
            convert = blkio_weight if weight_file == "blkio.weight" else bfq_weight
            blkio.write(weight_file, convert(limits.io_weight))
        if Capability.IO_LIMIT in caps:
            for name, line in v1_throttles(limits):
                blkio.write(name, line)

    def attach(self) -> None:
        # cpuset first, so no instruction runs on a CPU outside the tier.
        for group in self._dirs.values():
            group.attach_self()

    def started(self, pid: int) -> None:
        pids = self._dirs["pids"]
        if pid not in pids.tree_procs() and is_alive(pid):
            raise BackendError(
                f"the workload (pid {pid}) did not land in {pids.path}",
                path=pids.path,
                operation="attach",
            )

    # -- observation ----------------------------------------------------------------------

    def _refused_below(self) -> int:
        """Forks the run's ceiling refused to processes in nested groups (a container's):
        the highest count seen of each group, kept after the group is gone."""
        for group, count in nested_refusals(self._dirs["pids"].path).items():
            self._nested_refused[group] = max(count, self._nested_refused.get(group, 0))
        return sum(self._nested_refused.values())

    def sample(self) -> Usage:
        if self._counters is None:
            self._counters = {
                key: HeldFiles(self._dirs[key].path, names)
                for key, names in _SAMPLED.items()
                if key in self._dirs
            }
        memory, pids, cpuacct = (self._counters[k] for k in ("memory", "pids", "cpuacct"))
        cpu, blkio, unified = (self._counters.get(k) for k in ("cpu", "blkio", "unified"))
        throttled = cpu.keyed("cpu.stat").get("throttled_time") if cpu is not None else None
        percpu = [int(ns) for ns in (cpuacct.text("cpuacct.usage_percpu") or "").split()]
        killed = self._oom(memory)
        return Usage(
            memory=memory.int("memory.usage_in_bytes"),
            memory_peak=memory.int("memory.max_usage_in_bytes"),
            tasks=pids.int("pids.current"),
            tasks_peak=pids.int("pids.peak"),
            cpu_s=sum(percpu) / 1e9,  # cpuacct.usage is this same sum
            cpus_used=frozenset(cpu for cpu, ns in enumerate(percpu) if ns > 0),
            tasks_refused=pids.keyed("pids.events").get("max", 0) + self._refused_below(),
            oom_kills=killed.kills,
            oom_site=killed.site,
            oom_ceiling=killed.ceiling,
            memory_split=v1_split(
                memory.keyed("memory.stat"), memory.int("memory.kmem.usage_in_bytes")
            ),
            io=self._io(blkio),
            cpu_throttled_s=None if throttled is None else throttled / 1e9,  # ns
            stalls=None
            if unified is None
            else Stalls(
                psi_total_s(unified.text("cpu.pressure")),
                psi_total_s(unified.text("memory.pressure")),
                psi_total_s(unified.text("io.pressure")),
            ),
        )

    def _io(self, blkio: HeldFiles | None) -> IoCounts | None:
        if blkio is None or self._limits is None:
            return None
        io = parse_blkio(
            blkio.text("blkio.throttle.io_service_bytes_recursive"),
            blkio.text("blkio.throttle.io_serviced_recursive"),
        )
        return None if io is None else blkio_known(io, self._limits)

    def _oom(self, memory: HeldFiles) -> oom.OomReading:
        """OOM kills anywhere in the subtree, and whose ceiling they came from (see oom)."""
        own = (
            memory.keyed("memory.oom_control").get("oom_kill", 0),
            memory.int("memory.failcnt") or 0,
        )
        nodes = oom.v1_nodes(self._dirs["memory"], own)
        events = self._oom_events.count() if self._oom_events is not None else 0
        if not events and not any(kills for kills, _ in nodes.values()):
            return oom.OomReading()
        run_hit = own[1] > 0 or self._ancestors.owned_hit()
        tally = oom.with_events(oom.tally_v1(nodes, run_hit), events, run_hit)
        return oom.reading(tally, self._ancestors)

    def pids(self) -> list[int]:
        tree = self._tree_dir()
        return tree.tree_procs() if tree is not None else []

    def _tree_dir(self) -> CgroupDir | None:
        return self._dirs.get("unified") or self._dirs.get("pids")

    # -- control --------------------------------------------------------------------------

    def kill(self, sig: int) -> None:
        tree = self._tree_dir()
        if tree is None:
            return
        if sig != signal.SIGKILL:
            tree.signal_all(sig)
        elif self._kill_file:
            kill_until_empty(tree, via_kill_file=True)
        else:
            self._freeze_kill()

    def _freeze_kill(self) -> None:
        """Without cgroup.kill: freeze so nothing can fork, kill everything, thaw, repeat.
        The v1 freezer freezes the groups below too, and a frozen task dies once thawed."""
        deadline = time.monotonic() + 5
        freezer = self._dirs["freezer"]
        while freezer.tree_procs():
            self.freeze(True)
            freezer.signal_all(signal.SIGKILL)
            self.freeze(False)
            if time.monotonic() > deadline:
                raise CleanupError(freezer.path, "empty", None, "processes survived SIGKILL")
            time.sleep(0.005)

    def freeze(self, frozen: bool) -> None:
        if "unified" in self._dirs:
            self._dirs["unified"].write("cgroup.freeze", int(frozen))
            return
        freezer = self._dirs["freezer"]
        freezer.write("freezer.state", "FROZEN" if frozen else "THAWED")
        deadline = time.monotonic() + 1
        while frozen and freezer.read("freezer.state").strip() != "FROZEN":
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)

    def remove(self) -> None:
        """Every hierarchy's subtree, deepest first, within one deadline; the locks are let
        go even where removal failed, so that the next cleanup can take the leftovers."""
        for counters in (self._counters or {}).values():
            counters.close()
        self._counters = None
        if self._oom_events is not None:
            self._oom_events.close()
            self._oom_events = None
        deadline = time.monotonic() + REMOVE_WAIT_S
        failed: list[CleanupError] = []
        for key, group in reversed(list(self._dirs.items())):
            try:
                group.remove_tree(deadline)
            except CleanupError as err:
                failed.append(err)
                continue
            del self._dirs[key]
        for owned in self._owned:
            owned.release()
        self._owned = []
        if failed:
            first = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise CleanupError(first.path, first.operation, first.errno, f"{first.detail}{more}")

    def stale_parents(self) -> list[Path]:
        parents = list(self._parents.values())
        if self._unified_parent is not None:
            parents.insert(0, self._unified_parent)  # its cgroup.kill empties the others too
        return parents


def _node(path: Path) -> Node:
    return Node(str(path).encode())
