"""Cgroup filesystem plumbing shared by the cgroup backends: mounts, own paths, run dirs."""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tiered_run.errors import BackendError
from tiered_run.heldfiles import parse_keyed

PREFIX = "tiered-run-"


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
        raise BackendError(f"this process has no cgroup in {mount.path}")
    return mount.path / rel.lstrip("/")


def new_run_id() -> str:
    """`<our pid>-<random>`: the pid tells a later start whether the owner is still alive."""
    return f"{os.getpid()}-{os.urandom(3).hex()}"  # not `secrets`: its import costs ~5 ms


def is_stale(name: str) -> bool:
    """A run dir whose owning tiered-run is gone (or a zombie its parent has not reaped)."""
    if not name.startswith(PREFIX):
        return False
    owner = name[len(PREFIX) :].split("-", 1)[0]
    return owner.isdigit() and not is_alive(int(owner))


def is_alive(pid: int) -> bool:
    """Running: it exists and is not a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class CgroupDir:
    """One cgroup directory; errors become BackendError naming the file."""

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
            raise BackendError(
                f"cannot write {value!r} to {self.path / name}: {err.strerror}"
            ) from err

    def keyed(self, name: str) -> dict[str, int]:
        """A `key value` per line file (memory.events, pids.events, cpu.stat)."""
        return parse_keyed(self.read(name))

    def procs(self) -> list[int]:
        try:
            return [int(p) for p in self.read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def mkdir(self) -> None:
        try:
            self.path.mkdir()
        except OSError as err:
            raise BackendError(f"cannot create cgroup {self.path}: {err.strerror}") from err

    def rmdir(self, wait: float = 2.0) -> None:
        """Remove, retrying while the kernel still lists exiting tasks (EBUSY)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise BackendError(f"cannot remove cgroup {self.path}: {err.strerror}") from err
                time.sleep(0.01)

    def attach_self(self) -> None:
        """Write our pid into cgroup.procs with raw syscalls: safe between fork and exec."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def signal_all(self, sig: int) -> None:
        for pid in self.procs():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def stale_dirs(parent: Path) -> list[Path]:
    try:
        return [child for child in parent.iterdir() if child.is_dir() and is_stale(child.name)]
    except OSError:
        return []


def kill_until_empty(group: CgroupDir, via_kill_file: bool, deadline_s: float = 5.0) -> None:
    """SIGKILL every task until the group is empty; cgroup.kill makes it one race-free write."""
    deadline = time.monotonic() + deadline_s
    while group.procs():
        if via_kill_file:
            group.write("cgroup.kill", 1)
        else:
            group.signal_all(signal.SIGKILL)
        if time.monotonic() > deadline:
            raise BackendError(f"processes in {group.path} survived SIGKILL")
        time.sleep(0.005)
