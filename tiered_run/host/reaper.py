"""tiered-run as a child subreaper, with every backend.

A process of the workload that double-forks and calls setsid() would otherwise be
reparented to PID 1; under a PID 1 that never reaps (a CI agent, a container without an
init) it then lingers as a zombie after the kill, and zombies still count against the
run's tasks ceiling (pids.current) until they are reaped. As a subreaper, tiered-run
gets those orphans back, and reaps them (prctl(2) PR_SET_CHILD_SUBREAPER).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Collection

from tiered_run.host.processes import is_zombie

_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def set_child_subreaper(enabled: bool) -> None:
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def children() -> list[int]:
    """Our direct children, forked or adopted (/proc/self/task/*/children; Linux 3.5+)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as handle:
                pids.extend(int(pid) for pid in handle.read().split())
        except OSError:
            continue  # a thread that just ended
    return pids


def reap_orphans(keep: Collection[int] = ()) -> int:
    """Reap every zombie child except those in `keep` (waited for elsewhere, e.g. the main
    process and helper processes whose status someone reads). Returns how many."""
    reaped = 0
    for pid in children():
        if pid in keep or not is_zombie(pid):
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
        except ChildProcessError:
            continue
    return reaped
