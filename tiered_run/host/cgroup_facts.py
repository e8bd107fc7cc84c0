"""The cgroups this process sits in, read for `doctor`: mounts, our group in each hierarchy,
whether we may write there, what the unified group can hand down, and the memory ceilings
above us. Reads only; every file that cannot be read is an unknown, never an error.

`root` and `proc_self` let tests point the reader at a fake cgroupfs under tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiered_run.backends.cgroupfs import Mount, parse_mountinfo, parse_proc_cgroup
from tiered_run.host.kernel_files import read_int, read_text
from tiered_run.inputs.units import parse_cpus
from tiered_run.model.facts import CgroupFacts, CgroupMount, MemoryCeiling, OwnGroup, UnifiedGroup

# The files whose presence tells what the kernel offers a cgroup (see policy.doctor.kernel).
FEATURE_FILES = (
    "memory.peak",  # Linux 5.19
    "cgroup.kill",  # Linux 5.14
    "cgroup.freeze",  # Linux 5.2
    "memory.swap.max",  # swap accounting on cgroup v2
    "memory.max",
    "cpuset.cpus.effective",
)
# A v1 memory limit this high is "no limit" (PAGE_COUNTER_MAX pages, rounded).
_V1_UNLIMITED = 1 << 62


def read_cgroup_facts(mountinfo: Path | None = None, proc_self: Path | None = None) -> CgroupFacts:
    """Our cgroups as /proc/self/mountinfo and /proc/self/cgroup describe them."""
    proc_self = proc_self or Path("/proc/self")
    try:
        mounts = parse_mountinfo((mountinfo or proc_self / "mountinfo").read_text())
        own = parse_proc_cgroup((proc_self / "cgroup").read_text())
    except (OSError, ValueError):
        return CgroupFacts()
    v1 = tuple(_v1_group(m, own) for m in mounts if m.version == 1 and _controllers(m))
    unified_mount = next((m for m in mounts if m.version == 2), None)
    unified = _unified_group(unified_mount, own) if unified_mount is not None else None
    memory = next((g for g in v1 if "memory" in g.hierarchy.split(",")), None)
    return CgroupFacts(
        mounts=tuple(
            CgroupMount(str(m.path), m.version, tuple(sorted(m.controllers))) for m in mounts
        ),
        own=own,
        v1=v1,
        unified=unified,
        ceilings=_ceilings(memory, unified),
        cpuset=_cpuset(v1, unified),
        swap_accounting=_swap_accounting(memory, unified, unified_mount),
    )


def _controllers(mount: Mount) -> list[str]:
    return sorted(c for c in mount.controllers if "=" not in c)


def _v1_group(mount: Mount, own: dict[str, str]) -> OwnGroup:
    controllers = _controllers(mount)
    path = own.get(controllers[0], "")
    directory = _visible(mount.path, path)
    return OwnGroup(
        hierarchy=",".join(controllers),
        path=path,
        directory=str(directory) if directory else None,
        writable=_writable(directory),
        owner=_owner(directory),
    )


def _unified_group(mount: Mount, own: dict[str, str]) -> UnifiedGroup:
    path = own.get("", "")
    directory = _visible(mount.path, path)
    files: tuple[str, ...] = ()
    controllers: tuple[str, ...] = ()
    subtree: tuple[str, ...] = ()
    others: tuple[int, ...] = ()
    if directory is not None:
        files = tuple(name for name in FEATURE_FILES if (directory / name).exists())
        controllers = _words(directory / "cgroup.controllers")
        subtree = _words(directory / "cgroup.subtree_control")
        me = os.getpid()
        others = tuple(pid for pid in _ints(directory / "cgroup.procs") if pid != me)
    return UnifiedGroup(
        hierarchy="unified",
        path=path,
        directory=str(directory) if directory else None,
        writable=_writable(directory),
        owner=_owner(directory),
        controllers=controllers,
        subtree=subtree,
        others=others,
        files=files,
    )


def _visible(mount: Path, path: str) -> Path | None:
    """Our group's directory on the mount; None where it is not there (a cgroup namespace
    or a mount of another part of the tree)."""
    directory = mount / path.lstrip("/")
    return directory if directory.is_dir() else None


def _writable(directory: Path | None) -> bool:
    return directory is not None and all(
        os.access(p, os.W_OK) for p in (directory, directory / "cgroup.procs")
    )


def _owner(directory: Path | None) -> int | None:
    try:
        return directory.stat().st_uid if directory is not None else None
    except OSError:
        return None


def _words(path: Path) -> tuple[str, ...]:
    return tuple(sorted((read_text(path) or "").split()))


def _ints(path: Path) -> tuple[int, ...]:
    return tuple(int(word) for word in (read_text(path) or "").split() if word.isdigit())


def _ceilings(memory: OwnGroup | None, unified: UnifiedGroup | None) -> tuple[MemoryCeiling, ...]:
    """The memory ceilings of our group and every group above it, ours first: v1's
    limit_in_bytes and oom_control, or v2's memory.max (which has no OOM switch)."""
    found = []
    if memory is not None and memory.directory is not None:
        for directory, path in _upwards(Path(memory.directory), memory.path):
            limit = read_int(directory / "memory.limit_in_bytes")
            control = _keyed(directory / "memory.oom_control")
            found.append(
                MemoryCeiling(
                    path,
                    None if limit is None or limit >= _V1_UNLIMITED else limit,
                    control.get("oom_kill_disable", 0) == 1,
                )
            )
    elif unified is not None and unified.directory is not None:
        for directory, path in _upwards(Path(unified.directory), unified.path):
            text = (read_text(directory / "memory.max") or "").strip()
            if text.isdigit():
                found.append(MemoryCeiling(path, int(text)))
    return tuple(found)


def _upwards(directory: Path, path: str) -> list[tuple[Path, str]]:
    """Our group and each above it up to the mount's root, as (directory, cgroup path)."""
    chain = []
    parts = [p for p in path.split("/") if p]
    while True:
        chain.append((directory, "/" + "/".join(parts)))
        if not parts:
            return chain
        parts.pop()
        directory = directory.parent


def _keyed(path: Path) -> dict[str, int]:
    values = {}
    for line in (read_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def _cpuset(v1: tuple[OwnGroup, ...], unified: UnifiedGroup | None) -> tuple[int, ...] | None:
    """The CPUs our group allows: v1's cpuset.effective_cpus (or cpuset.cpus), or v2's
    cpuset.cpus.effective."""
    candidates: list[Path] = []
    for group in v1:
        if "cpuset" in group.hierarchy.split(",") and group.directory is not None:
            base = Path(group.directory)
            candidates += [base / "cpuset.effective_cpus", base / "cpuset.cpus"]
    if unified is not None and unified.directory is not None:
        candidates.append(Path(unified.directory) / "cpuset.cpus.effective")
    for path in candidates:
        text = (read_text(path) or "").strip()
        if text:
            try:
                return parse_cpus(text)
            except ValueError:
                continue
    return None


def _swap_accounting(
    memory: OwnGroup | None, unified: UnifiedGroup | None, mount: Mount | None
) -> bool | None:
    """Whether the memory controller can count swap: v1's memory.memsw.* files (Ubuntu
    20.04 needs swapaccount=1 for them), v2's memory.swap.max. Looked for in our group,
    else (v2, where our group has no memory controller) in a group below the root."""
    if memory is not None and memory.directory is not None:
        return (Path(memory.directory) / "memory.memsw.limit_in_bytes").exists()
    if unified is None or mount is None:
        return None
    if "memory.max" in unified.files:
        return "memory.swap.max" in unified.files
    try:
        children = [e for e in os.scandir(mount.path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for child in children:
        if os.path.exists(os.path.join(child.path, "memory.max")):
            return os.path.exists(os.path.join(child.path, "memory.swap.max"))
    return None
