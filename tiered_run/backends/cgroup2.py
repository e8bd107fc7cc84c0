"""The unified (v2) cgroup backend: one transient cgroup per run.

Where the kernel delegates no controllers to us (a v1/v2 hybrid mount), placement, kill,
freeze and emptiness are still exact; memory and tasks are then summed from the member
processes and enforced by the monitor instead of the kernel.

The run is the whole subtree: a workload may make cgroups below its own (a nested run, a
container runtime, or only to hide in one). `cgroup.kill` and `cgroup.freeze` act on the
subtree; listing, signals other than SIGKILL and removal walk it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Collection
from pathlib import Path

from tiered_run.backends import oom
from tiered_run.backends.base import Backend, Probe
from tiered_run.backends.cgroupfs import (
    GONE,
    PREFIX,
    CgroupDir,
    Mount,
    kill_until_empty,
    new_run_id,
    own_cgroups,
    own_dir,
    parse_proc_cgroup,
    system_mounts,
)
from tiered_run.backends.delegation import WANTED, delegate, listed
from tiered_run.backends.news import KernelNews, news_v2
from tiered_run.backends.ownership import Owned, claim, self_leaf_name
from tiered_run.backends.proctree import IoTally, measure
from tiered_run.backends.shares import (
    bfq_weight,
    cpu_max,
    io_max_line,
    io_weight_file,
    parse_io_stat,
    psi_total_s,
)
from tiered_run.errors import BackendError
from tiered_run.host.heldfiles import HeldFiles
from tiered_run.host.processes import is_alive
from tiered_run.inputs.units import format_cpus
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability, MemorySplit, Stalls, Usage

# Read at every monitor sample, held open (see HeldFiles).
_SAMPLED = (
    "memory.current",
    "memory.peak",
    "memory.events",
    "memory.events.local",
    "memory.stat",
    "pids.current",
    "pids.peak",
    "pids.events",
    "cpu.stat",
    "io.stat",
    "cpu.pressure",
    "memory.pressure",
    "io.pressure",
)


def _keyed(group: CgroupDir, name: str) -> dict[str, int]:
    try:
        return group.keyed(name)
    except OSError as err:
        if err.errno in GONE:
            return {}
        raise


def _default_mount() -> Mount:
    for mount in system_mounts():
        if mount.version == 2:
            return mount
    raise BackendError(
        "no cgroup2 filesystem is mounted", path="/proc/self/mountinfo", operation="locate"
    )


def v2_split(stat: dict[str, int]) -> MemorySplit | None:
    """memory.stat of cgroup v2: `file` includes shmem; `kernel` (Linux 5.18+) is the sum of
    the kernel's own lines, which older kernels give one by one."""
    if "anon" not in stat:
        return None
    kernel = stat.get("kernel")
    if kernel is None:
        parts = ("kernel_stack", "pagetables", "percpu", "sock", "slab")
        kernel = sum(stat.get(part, 0) for part in parts)
    shmem = stat.get("shmem", 0)
    return MemorySplit(stat["anon"], max(0, stat.get("file", 0) - shmem), shmem, kernel)


def capabilities_of(
    controllers: Collection[str], group: Path, mount: Path
) -> frozenset[Capability]:
    """What the kernel does for a run with `controllers`; `group` is the run's cgroup (or,
    before there is one, its parent), whose files say whether the kernel is recent enough
    for memory.peak and cgroup.kill. Without memory, memory is sampled; without pids, tasks;
    without io, the tree's I/O where the tree is walked for those (never just for it: the
    walk's cost grows with the tree)."""
    caps = {Capability.FREEZE}
    if "cpuset" in controllers:
        caps.add(Capability.CPUSET)
    if "memory" in controllers:
        caps |= {Capability.MEMORY_LIMIT, Capability.MEMORY_HIGH, Capability.OOM_EVENTS}
        if (group / "memory.peak").exists():
            caps.add(Capability.MEMORY_PEAK)
        caps.add(Capability.MEMORY_LOW)
    if "pids" in controllers:
        caps.add(Capability.TASKS_LIMIT)
    if "cpu" in controllers:
        caps |= {Capability.CPU_WEIGHT, Capability.CPU_QUOTA}
    if "io" in controllers:
        caps |= {Capability.IO_LIMIT, Capability.IO_STATS}
        if io_weight_file(group, mount) is not None:
            caps.add(Capability.IO_WEIGHT)
    if (group / "cgroup.kill").exists():
        caps.add(Capability.ATOMIC_KILL)
    return frozenset(caps)


class Cgroup2Backend(Backend):
    """A run is `<our cgroup>/tiered-run-<run id>`, created before the fork and removed after."""

    name = "cgroup2"

    def __init__(
        self, mount: Mount | None = None, parent: Path | None = None, owned_above: int = 0
    ) -> None:
        """`owned_above`: how many cgroups above the run's are part of it (a systemd scope)."""
        self.mount = mount or _default_mount()
        if parent is None:
            parent = own_dir(self.mount, own_cgroups())
            if parent.name == self_leaf_name():  # moved there by an earlier run
                parent = parent.parent
        self.parent = parent
        self.capabilities: frozenset[Capability] = frozenset()
        self._dir: CgroupDir | None = None
        self._owned: Owned | None = None
        self._ancestors = oom.Ancestors(oom.v2_oom_events, oom.v2_limit, owned_above)
        self._controllers: frozenset[str] = frozenset()
        self._counters: HeldFiles | None = None
        self._io_tally = IoTally()

    @classmethod
    def _probe(cls) -> Probe:
        problem = cls._problem()
        if problem is not None:
            return Probe(False, problem)
        missing = cls.missing_controllers()
        if missing:
            reason = (
                f"cgroup v2 without {', '.join(missing)} controllers; "
                "those ceilings are enforced by the monitor"
            )
            return Probe(True, reason, cls.offered())
        return Probe(True, "cgroup v2 with cpuset, memory and pids controllers", cls.offered())

    @classmethod
    def _problem(cls) -> str | None:
        """Why no run can be made below our cgroup, found by making (and removing) one."""
        try:
            parent = cls().parent
        except (BackendError, OSError) as err:
            return str(err)
        if not parent.is_dir():
            return f"our cgroup {parent} is not visible in the cgroup2 mount"
        if not (os.access(parent, os.W_OK) and os.access(parent / "cgroup.procs", os.W_OK)):
            return f"{parent} is not writable: run as root or in a delegated cgroup"
        group = CgroupDir(parent)
        wanted = [c for c in WANTED[:3] if c in listed(group, "cgroup.controllers")]
        enabled = listed(group, "cgroup.subtree_control")
        others = [pid for pid in group.procs() if pid != os.getpid()]
        if others and not set(wanted) <= enabled:
            return (
                f"{parent} also holds other processes, so its controllers cannot be delegated; "
                "start tiered-run in a cgroup of its own (systemd-run --scope -p Delegate=yes)"
            )
        # Named like a run, so a probe orphaned by a crash is cleaned up as stale.
        try:
            probe = claim(parent / f"{PREFIX}{new_run_id()}")
        except BackendError as err:
            return str(err)
        try:
            CgroupDir(probe.path).rmdir()
        except BackendError as err:
            return str(err)
        finally:
            probe.release()
        return None

    @classmethod
    def missing_controllers(cls) -> tuple[str, ...]:
        """Which of cpuset, memory and pids our cgroup cannot delegate (all of them on hybrid,
        or without a cgroup2 mount); a cheap read, unlike the probe."""
        _, available = cls._available()
        return tuple(name for name in WANTED[:3] if name not in available)

    @classmethod
    def offered(cls) -> frozenset[Capability]:
        """From the controllers our cgroup has (a cheap read): on a hybrid machine `auto`
        passes this backend over without making a probe cgroup."""
        parent, available = cls._available()
        if parent is None:
            return frozenset()
        return capabilities_of(available, parent, cls().mount.path)

    @classmethod
    def _available(cls) -> tuple[Path | None, set[str]]:
        """Our cgroup and the controllers it has; none without a cgroup2 mount."""
        try:
            parent = cls().parent
            return parent, listed(CgroupDir(parent), "cgroup.controllers")
        except (BackendError, OSError):
            return None, set()

    @property
    def path(self) -> Path | None:
        """The run's cgroup directory once created."""
        return self._dir.path if self._dir else None

    def cgroup_path(self) -> Path | None:
        return self.path

    def news(self) -> KernelNews | None:
        return news_v2(self._dir.path, self._controllers) if self._dir is not None else None

    def unified_path(self) -> Path | None:
        return self.path

    def create(self, run_id: str, limits: Limits) -> None:
        parent = CgroupDir(self.parent)
        self._controllers = delegate(parent)
        run = CgroupDir(self.parent / f"{PREFIX}{run_id}")
        self._owned = claim(run.path)
        self._dir = run
        try:
            self._apply(parent, run, limits)
        except BackendError:
            try:
                run.rmdir(time.monotonic() + 0.5)
            except BackendError:
                pass  # left for remove() or a later cleanup_stale()
            else:
                self._dir = None
                self._owned.release()
            raise
        self._ancestors.record(self.parent)
        self.capabilities = capabilities_of(self._controllers, run.path, self.mount.path)

    def _apply(self, parent: CgroupDir, run: CgroupDir, limits: Limits) -> None:
        controllers = self._controllers
        if "cpuset" in controllers:
            if limits.cpus:
                run.write("cpuset.cpus", format_cpus(limits.cpus))
            try:
                mems = parent.read("cpuset.mems.effective").strip()
            except FileNotFoundError:
                mems = ""
            if mems:
                run.write("cpuset.mems", mems)
        if "memory" in controllers:
            if limits.memory is not None:
                run.write("memory.max", limits.memory)
                # Without this the ceiling only moves the excess to swap.
                if (run.path / "memory.swap.max").exists():
                    run.write("memory.swap.max", 0)
            if limits.memory_high is not None:
                run.write("memory.high", limits.memory_high)
            # An OOM kill takes the whole run, not one arbitrary member.
            run.write("memory.oom.group", 1)
            if limits.memory_low is not None:
                run.write("memory.low", limits.memory_low)
        if "pids" in controllers and limits.tasks_max is not None:
            run.write("pids.max", limits.tasks_max)
        if "cpu" in controllers:
            if limits.cpu_weight is not None:
                run.write("cpu.weight", limits.cpu_weight)
            if limits.cpu_quota is not None:
                run.write("cpu.max", cpu_max(limits.cpu_quota))
        if "io" in controllers:
            weight_file = io_weight_file(run.path, self.mount.path)
            if limits.io_weight is not None and weight_file == "io.weight":
                run.write(weight_file, f"default {limits.io_weight}")
            elif limits.io_weight is not None and weight_file is not None:
                run.write(weight_file, bfq_weight(limits.io_weight))
            if (line := io_max_line(limits)) is not None:
                run.write("io.max", line)

    def _require(self) -> CgroupDir:
        if self._dir is None:
            raise BackendError(
                f"the cgroup2 run directory below {self.parent} was not created",
                path=self.parent,
                operation="use",
            )
        return self._dir

    def attach(self) -> None:
        self._require().attach_self()

    def started(self, pid: int) -> None:
        run = self._require()
        if pid in run.tree_procs() or not is_alive(pid):
            return  # inside, or exited already: nothing escaped
        try:
            where = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text()).get("", "?")
        except FileNotFoundError:
            return
        raise BackendError(
            f"process {pid} landed in cgroup {where}, not in {run.path}",
            path=run.path,
            operation="attach",
        )

    def sample(self) -> Usage:
        run = self._dir
        if run is None:
            return Usage()
        if self._counters is None:
            self._counters = HeldFiles(run.path, _SAMPLED)
        counters, controllers = self._counters, self._controllers
        memory = memory_peak = tasks = tasks_peak = split = None
        memory_high_events = tasks_refused = 0
        killed = oom.OomReading()
        if "memory" in controllers:
            memory = counters.int("memory.current")
            memory_peak = counters.int("memory.peak")
            events = counters.keyed("memory.events")
            memory_high_events = events.get("high", 0)
            killed = self._oom(events, counters.keyed("memory.events.local"))
            split = v2_split(counters.keyed("memory.stat"))
        if "pids" in controllers:
            tasks = counters.int("pids.current")
            tasks_peak = counters.int("pids.peak")
            tasks_refused = counters.keyed("pids.events").get("max", 0)
        io = parse_io_stat(counters.text("io.stat")) if "io" in controllers else None
        if not {"memory", "pids"} <= controllers:
            totals = measure(run.tree_procs())
            if "memory" not in controllers:
                memory, split = totals.memory, totals.split
            if "pids" not in controllers:
                tasks = totals.threads
            if "io" not in controllers:  # the walk is made anyway: its I/O comes free
                io = self._io_tally.add(totals.io)
        cpu_stat = counters.keyed("cpu.stat")
        usage_usec, throttled = cpu_stat.get("usage_usec"), cpu_stat.get("throttled_usec")
        return Usage(
            memory=memory,
            memory_peak=memory_peak,
            memory_split=split,
            tasks=tasks,
            tasks_peak=tasks_peak,
            cpu_s=usage_usec / 1e6 if usage_usec is not None else None,
            oom_kills=killed.kills,
            tasks_refused=tasks_refused,
            memory_high_events=memory_high_events,
            oom_site=killed.site,
            oom_ceiling=killed.ceiling,
            io=io,
            cpu_throttled_s=throttled / 1e6 if throttled is not None else None,
            stalls=Stalls(
                psi_total_s(counters.text("cpu.pressure")),
                psi_total_s(counters.text("memory.pressure")),
                psi_total_s(counters.text("io.pressure")),
            ),
        )

    def _oom(self, events: dict[str, int], local: dict[str, int]) -> oom.OomReading:
        """memory.events counts the subtree's kills; see oom for whose ceiling they were."""
        if not events.get("oom_kill", 0):
            return oom.OomReading()
        if not local and "oom" in events:  # no memory.events.local (before Linux 5.2)
            return oom.OomReading(events["oom_kill"])
        run_hit = local.get("oom", 0) > 0 or self._ancestors.owned_hit()
        return oom.reading(oom.tally_v2(events, local, run_hit), self._ancestors)

    def pids(self) -> list[int]:
        return self._dir.tree_procs() if self._dir else []

    def kill(self, sig: int) -> None:
        run = self._dir
        if run is None:
            return
        if sig == signal.SIGKILL:
            kill_until_empty(run, via_kill_file=(run.path / "cgroup.kill").exists())
        else:
            run.signal_all(sig)

    def freeze(self, frozen: bool) -> None:
        """Pause or resume; a pause waits up to 1 s for the kernel to report the tree frozen."""
        run = self._require()
        run.write("cgroup.freeze", int(frozen))
        deadline = time.monotonic() + 1.0
        while frozen and time.monotonic() < deadline:
            events = _keyed(run, "cgroup.events")
            if events.get("frozen", 1) == 1:
                return
            time.sleep(0.005)

    def remove(self) -> None:
        """The run's subtree, deepest first; the lock is let go even where removal failed,
        so that the next cleanup can take what is left."""
        if self._counters is not None:
            self._counters.close()
            self._counters = None
        try:
            if self._dir is not None:
                self._dir.remove_tree()
                self._dir = None
        finally:
            if self._owned is not None:
                self._owned.release()
                self._owned = None

    def stale_parents(self) -> list[Path]:
        return [self.parent]
