"""No usable cgroup: affinity and rlimits before exec, a subreaper to keep the whole tree.

tiered-run is a child subreaper (set by the supervisor for every backend), so a descendant
that double-forks and setsid()s is reparented to tiered-run instead of init and can still
be found and killed. Memory and task counts come from walking that tree, so their cost
grows with its size and peaks are sampled rather than exact, as is its I/O (/proc/PID/io of
each process, kept after it exits); the kernel enforces nothing beyond the CPU affinity:
weights, a CPU quota, I/O throttles and memory_low are not applied.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from tiered_run.backends.base import Backend, Probe
from tiered_run.backends.proctree import IoTally, measure
from tiered_run.host.processes import read_stat, signal_each, start_ticks
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Usage


class PlainBackend(Backend):
    name = "plain"

    def __init__(self) -> None:
        self._root: int | None = None
        self._helpers: set[int] = set()
        self._on_tree: Callable[[list[tuple[int, int]]], object] | None = None
        self._io = IoTally()

    @classmethod
    def _probe(cls) -> Probe:
        """Works anywhere; the kernel enforces nothing but the CPU affinity."""
        return Probe(True, "no cgroup: CPU affinity, memory and tasks sampled from the tree")

    def create(self, run_id: str, limits: Limits) -> None:
        """Nothing to create: the tree is whatever descends from tiered-run."""

    def attach(self) -> None:
        """Nothing to join: affinity and rlimits are applied by the launcher for every backend."""

    def started(self, pid: int) -> None:
        self._root = pid

    def _tree(self) -> list[int]:
        """Our descendants: the workload plus orphans the subreaper inherited. Reaps zombies."""
        import psutil  # only this backend walks the tree; others never pay for the import

        me = os.getpid()
        pids = []
        try:
            descendants = psutil.Process(me).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for pid in (proc.pid for proc in descendants if proc.pid not in self._helpers):
            try:
                stat = read_stat(pid)
            except OSError:  # gone while it was read
                continue
            if stat is None:
                continue
            if stat.exited:
                if stat.ppid == me and pid != self._root:  # the main one is waited for
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                continue
            pids.append(pid)
        return pids

    def report_tree(self, callback: Callable[[list[tuple[int, int]]], object]) -> None:
        """Without a cgroup only a list can say what to kill should tiered-run die: each
        sample hands the tree, as (pid, start time), to `callback` (the watchdog's)."""
        self._on_tree = callback

    def sample(self) -> Usage:
        pids = self._tree()
        if self._on_tree is not None:
            members = [(pid, start) for pid in pids if (start := start_ticks(pid)) is not None]
            self._on_tree(members)
        totals = measure(pids)
        return Usage(
            memory=totals.memory or None,
            memory_split=totals.split if totals.memory else None,
            tasks=totals.threads,
            cpu_s=totals.cpu_s,
            cpus_used=totals.cpus,
            io=self._io.add(totals.io),
        )

    def pids(self) -> list[int]:
        return self._tree()

    def kill(self, sig: int) -> None:
        """`sig` once to every process: the workload's own process group with killpg (which
        also reaches members the last walk missed), each other process of the tree by pid."""
        group = None
        if self._root is not None:
            try:
                os.killpg(self._root, sig)
                group = self._root
            except (ProcessLookupError, PermissionError):
                pass
        signal_each([pid for pid in self.pids() if group is None or _pgid(pid) != group], sig)

    def freeze(self, frozen: bool) -> None:
        self.kill(signal.SIGSTOP if frozen else signal.SIGCONT)

    def exclude(self, pid: int) -> None:
        self._helpers.add(pid)

    def remove(self) -> None:
        self._root = None


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
