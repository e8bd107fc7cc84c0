"""Removing what runs whose owner is gone left behind, bounded so that no start fails or
waits long for it: a directory that resists is left for the next start."""

from __future__ import annotations

import time
from pathlib import Path

from tiered_run.backends.cgroupfs import CgroupDir, kill_until_empty
from tiered_run.backends.ownership import Stale, stale_runs
from tiered_run.errors import BackendError

SWEEP_BUDGET_S = 2.0


def sweep(parents: list[Path], budget_s: float = SWEEP_BUDGET_S) -> list[str]:
    """Kill and remove the stale run subtrees below each of `parents`; returns the removed
    run directories. Never raises."""
    deadline = time.monotonic() + budget_s
    removed = []
    for parent in parents:
        for stale in stale_runs(parent):
            try:
                if time.monotonic() < deadline and _clear(stale, deadline):
                    removed.append(str(stale.path))
            except (BackendError, OSError):
                pass  # left for the next start
            finally:
                stale.release()
    return removed


def _clear(stale: Stale, deadline: float) -> bool:
    group = CgroupDir(stale.path)
    if stale.may_kill:
        _thaw(group)
        via_kill_file = (group.path / "cgroup.kill").exists()
        kill_until_empty(group, via_kill_file, deadline_s=max(0.0, deadline - time.monotonic()))
    elif group.tree_procs():
        return False  # an earlier version's run that still has processes: not ours to judge
    group.remove_tree(deadline)
    return True


def _thaw(group: CgroupDir) -> None:
    """A run left paused (--on-load pause) would keep its frozen tasks alive: a v1 freezer
    lets a killed task die only once thawed."""
    for member in group.tree():
        for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                if member.read(name).strip() not in (thawed, "THAWING"):
                    member.write(name, thawed)
            except (OSError, BackendError):
                continue
