"""Processes told apart by pid and start time, on the clock /proc counts in: a pid can be
reused, and a zombie is as good as gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def boot_now() -> float:
    """CLOCK_BOOTTIME, the clock of a process's start time in /proc/PID/stat."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def sleep_until(boot_time: float) -> None:
    remaining = boot_time - boot_now()
    if remaining > 0:
        time.sleep(remaining)


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot), or None when there is no pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def alive(pid: int, start: int) -> bool:
    """Still the same process and not dead: a zombie, or a reused pid, counts as gone."""
    state = proc_state(pid)
    return state is not None and state[1] == start and state[0] not in ("Z", "X")


def identities(pids: Iterable[int]) -> dict[int, int]:
    """pid -> start time, for the pids that exist now."""
    found = {}
    for pid in pids:
        state = proc_state(pid)
        if state is not None and state[0] not in ("Z", "X"):
            found[pid] = state[1]
    return found


def kill_survivors(procs: dict[int, int], limit: float = 5.0) -> int:
    """SIGKILL whatever of `procs` (pid -> start time) is still alive; returns how many."""
    living = {pid: start for pid, start in procs.items() if alive(pid, start)}
    for pid in living:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + limit
    while any(alive(p, s) for p, s in living.items()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(living)


def leaked_cgroups() -> list[str]:
    return sorted(
        str(Path(root) / d)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for d in dirs
        if d.startswith("tiered-run")
    )
