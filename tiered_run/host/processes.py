"""One process as /proc/PID/stat describes it: whether it still runs, and which one it is.

Every liveness question of tiered-run (is a run's owner alive, did the workload exit
before it could be checked, which children are zombies to reap, is a pid still the process
the watchdog was told about) is answered from this one file, read once per question.
`signal_each` is the one loop that signals a list of processes that may exit meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

# States of a process that has exited: a zombie waits to be reaped, X is on its way out.
_EXITED = ("Z", "X")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that tiered-run reads."""

    state: str  # R, S, D, T, Z, ... (proc(5))
    ppid: int
    start_ticks: int  # when it started, in clock ticks since boot

    @property
    def exited(self) -> bool:
        return self.state in _EXITED


def parse_stat(text: str) -> ProcStat:
    """The fields after the command name, which may itself hold spaces and parentheses."""
    fields = text.rpartition(")")[2].split()
    return ProcStat(state=fields[0], ppid=int(fields[1]), start_ticks=int(fields[19]))


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat; None when there is no such process. Other errors propagate."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_stat(text)


def is_alive(pid: int) -> bool:
    """Running: it exists and has not exited (a zombie has). A process whose stat cannot
    be read for another reason counts as alive: never judge a live owner dead."""
    try:
        stat = read_stat(pid)
    except (OSError, ValueError, IndexError):
        return True
    return stat is not None and not stat.exited


def is_zombie(pid: int) -> bool:
    """Exited and waiting to be reaped by its parent."""
    try:
        stat = read_stat(pid)
    except (OSError, ValueError, IndexError):
        return False
    return stat is not None and stat.state == "Z"


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot: with the pid, it names one process
    even after the pid is reused. None when it cannot be read."""
    try:
        stat = read_stat(pid)
    except (OSError, ValueError, IndexError):
        return None
    return None if stat is None else stat.start_ticks


def signal_each(pids: Iterable[int], sig: int) -> None:
    """`sig` to each process; one that has exited meanwhile is skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
