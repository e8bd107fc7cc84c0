"""Delegating cgroup v2 controllers to the runs below tiered-run's own cgroup.

The kernel lets a cgroup hand controllers to its children (`cgroup.subtree_control`) only
while no process sits in it (the no-internal-process rule). Where tiered-run is alone in
its cgroup, it moves itself into a leaf of its own first; where other processes share it,
that is an error that says how to start tiered-run in a cgroup of its own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tiered_run.backends.cgroupfs import CgroupDir
from tiered_run.backends.ownership import Owned, claim, self_leaf_name
from tiered_run.errors import BackendError

# Enabled in this order. cpu (weight, quota) and io (weight, throttles, io.stat) are
# optional: a run without them still has its hard ceilings, and the report lists what
# they would have held as not applied.
WANTED = ("cpuset", "memory", "pids", "cpu", "io")
OPTIONAL = ("cpu", "io")
# The leaf tiered-run moved itself into, held locked for the life of the process (a ladder
# runs many runs from it), so that no cleaner takes it for a dead run's.
_SELF_LEAVES: dict[Path, Owned] = {}


def listed(group: CgroupDir, name: str) -> set[str]:
    """Controller names in a list file; `+` is tolerated so a plain-file fake reads back."""
    try:
        return {word.lstrip("+") for word in group.read(name).split()}
    except FileNotFoundError:
        return set()


def delegate(parent: CgroupDir) -> frozenset[str]:
    """Delegate the wanted controllers the parent has; returns those a child will get."""
    available = listed(parent, "cgroup.controllers")
    enabled = listed(parent, "cgroup.subtree_control")
    missing = [name for name in WANTED if name in available and name not in enabled]
    try:
        _enable(parent, missing)
    except BackendError as err:
        # cpu is refused e.g. while realtime tasks live outside the root; we can do without.
        optional = [name for name in missing if name in OPTIONAL]
        if not optional or err.errno == errno.EBUSY:
            raise
        missing = [name for name in missing if name not in OPTIONAL]
        _enable(parent, missing)
    return frozenset(enabled & available) | frozenset(missing)


def _enable(parent: CgroupDir, names: list[str]) -> None:
    """Delegate controllers to the parent's children; when only tiered-run itself sits in
    the parent (no-internal-process rule), it first moves into a leaf of its own."""
    if not names:
        return
    line = " ".join(f"+{name}" for name in names)
    try:
        parent.write("cgroup.subtree_control", line)
    except BackendError as err:
        if err.errno != errno.EBUSY:
            raise
        others = [pid for pid in parent.procs() if pid != os.getpid()]
        if others:
            raise BackendError(
                f"cannot enable {', '.join(names)} below {parent.path}: it also holds processes "
                f"{', '.join(map(str, others[:5]))}; start tiered-run in a cgroup of its own, e.g. "
                "systemd-run --scope -p Delegate=yes tiered-run ...",
                path=err.path,
                operation="enable controllers",
                errno=err.errno,
            ) from err.__cause__
        leaf = CgroupDir(parent.path / self_leaf_name())
        if leaf.path not in _SELF_LEAVES:
            _SELF_LEAVES[leaf.path] = claim(leaf.path, reuse=True)
        leaf.attach_self()
        parent.write("cgroup.subtree_control", line)
