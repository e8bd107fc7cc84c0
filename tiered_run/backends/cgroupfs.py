"""Cgroup filesystem plumbing shared by the cgroup backends: mounts, own paths, run dirs.

A run's cgroup is a subtree, not one directory: its workload may make cgroups below it (a
nested tiered-run, runexec, a container runtime). Listing, signalling and removing all
walk that subtree, removing deepest first, because the kernel refuses to remove a cgroup
that still has children (EBUSY).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tiered_run.backends.base import CleanupError, os_failure
from tiered_run.backends.ownership import PREFIX, is_stale, new_run_id
from tiered_run.errors import BackendError
from tiered_run.host.heldfiles import parse_keyed
from tiered_run.host.processes import signal_each

__all__ = ["PREFIX", "CgroupDir", "Mount", "is_stale", "new_run_id"]

# A file that vanished, or a cgroup removed while we held it open.
GONE = (errno.ENOENT, errno.ENODEV)
REMOVE_WAIT_S = 2.0  # tasks killed a moment ago may still be exiting (EBUSY)


@dataclass(frozen=True)
class Mount:
    """A cgroup hierarchy: v2 has no controllers in its mount options."""

    path: Path
    version: int
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        path = Path(fields[4].replace("\\040", " "))
        if rfields[0] == "cgroup2":
            mounts.append(Mount(path, 2, frozenset()))
        else:
            options = set(rfields[2].split(","))
            named = {o for o in options if o.startswith("name=")}
            mounts.append(Mount(path, 1, frozenset(options & V1_CONTROLLERS) | named))
    return mounts


V1_CONTROLLERS = frozenset(
    {"cpuset", "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices", "net_cls"}
)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/PID/cgroup` -> {controller or "" for v2: path}."""
    paths = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def system_mounts() -> list[Mount]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def own_cgroups() -> dict[str, str]:
    return parse_proc_cgroup(Path("/proc/self/cgroup").read_text())


def own_dir(mount: Mount, own: dict[str, str], controller: str = "") -> Path:
    """The directory of the calling process's cgroup in `mount` (below which runs go)."""
    rel = own.get(controller if mount.version == 1 else "")
    if rel is None:
        raise BackendError(
            f"this process has no cgroup in {mount.path}", path=mount.path, operation="locate"
        )
    return mount.path / rel.lstrip("/")


class CgroupDir:
    """One cgroup directory. Writes, mkdir and rmdir turn OSError into BackendError (or
    CleanupError) with the file, the operation and the errno; reads raise OSError itself,
    since their callers tell a vanished file (ENOENT, ENODEV) from a real failure."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"CgroupDir({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_dir()

    def read(self, name: str) -> str:
        with open(self.path / name) as handle:
            return handle.read()

    def write(self, name: str, value: object) -> None:
        try:
            with open(self.path / name, "w") as handle:
                handle.write(str(value))
        except OSError as err:
            target = f"{value!r} to {self.path / name}"
            raise os_failure(err, "write", self.path / name, target=target) from err

    def keyed(self, name: str) -> dict[str, int]:
        """A `key value` per line file (memory.events, pids.events, cpu.stat)."""
        return parse_keyed(self.read(name))

    def procs(self) -> list[int]:
        try:
            return [int(p) for p in self.read("cgroup.procs").split()]
        except OSError as err:
            if err.errno in GONE:
                return []
            raise

    def children(self) -> list[CgroupDir]:
        """The groups directly below. A cgroup directory's link count is 2 plus its number
        of subdirectories (kernfs), so a stat spares the listing of a leaf's ~30 files."""
        try:
            if os.stat(self.path).st_nlink == 2:
                return []
            with os.scandir(self.path) as entries:
                return [CgroupDir(Path(e.path)) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError as err:
            if err.errno in GONE:
                return []
            raise

    def tree(self) -> list[CgroupDir]:
        """This group and every group below it, deepest first: the order of removal."""
        found = []
        for child in self.children():
            found += child.tree()
        found.append(self)
        return found

    def tree_procs(self) -> list[int]:
        """Every process in this group and the groups below it."""
        pids = self.procs()
        for child in self.children():
            pids += child.tree_procs()
        return pids

    def mkdir(self) -> None:
        try:
            self.path.mkdir()
        except OSError as err:
            raise os_failure(err, "create", self.path) from err

    def rmdir(self, deadline: float | None = None) -> None:
        """Remove, retrying while the kernel still lists exiting tasks (EBUSY) until the
        monotonic `deadline` (default: REMOVE_WAIT_S from now)."""
        if deadline is None:
            deadline = time.monotonic() + REMOVE_WAIT_S
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CleanupError(self.path, "remove", err.errno, err.strerror) from err
                time.sleep(0.01)

    def remove_tree(self, deadline: float | None = None) -> None:
        """Remove this group and every group below it, deepest first, within one deadline."""
        if deadline is None:
            deadline = time.monotonic() + REMOVE_WAIT_S
        for group in self.tree():
            group.rmdir(deadline)

    def attach_self(self) -> None:
        """Write our pid into cgroup.procs with raw syscalls: safe between fork and exec."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def signal_all(self, sig: int) -> None:
        """`sig` to every process of the subtree."""
        signal_each(self.tree_procs(), sig)


def kill_until_empty(group: CgroupDir, via_kill_file: bool, deadline_s: float = 5.0) -> None:
    """SIGKILL every task of the subtree until it is empty; `cgroup.kill` (cgroup v2) kills
    the whole subtree in one race-free write."""
    deadline = time.monotonic() + deadline_s
    while group.tree_procs():
        if via_kill_file:
            group.write("cgroup.kill", 1)
        else:
            group.signal_all(signal.SIGKILL)
        if time.monotonic() > deadline:
            raise CleanupError(group.path, "empty", None, "processes survived SIGKILL")
        time.sleep(0.005)


def nested_refusals(top: Path) -> dict[Path, int]:
    """Forks refused in each group below `top` that has no task ceiling of its own.

    cgroup v1 counts a refused fork in pids.events of the forking task's group, not of the
    group whose ceiling refused it: a fork refused at the run's ceiling inside a container's
    group (or any group a workload made) shows only there, and goes when that group is
    removed, so callers keep the highest count they saw of each. A group with a pids.max of
    its own is left out: a refusal there may be the workload's own ceiling, not the run's."""
    found = {}
    for root, _, _ in os.walk(top):
        group = Path(root)
        if group == top:
            continue
        try:
            if (group / "pids.max").read_text().strip() != "max":
                continue
            found[group] = parse_keyed((group / "pids.events").read_text()).get("max", 0)
        except (OSError, ValueError):
            continue  # removed meanwhile
    return found
