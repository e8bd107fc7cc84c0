"""Summing what a set of processes uses, for backends without kernel counters.

Its cost grows with the number of processes, which is why cgroup backends only fall back
to it for what their hierarchy does not count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Totals:
    rss: int
    threads: int
    cpu_s: float
    cpus: frozenset[int]


def measure(procs: Iterable[psutil.Process]) -> Totals:
    """RSS, threads, CPU time and last CPU of live processes; vanished ones are skipped."""
    rss = threads = 0
    cpu = 0.0
    cpus = set()
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                times = proc.cpu_times()
                cpu += times.user + times.system
                cpus.add(proc.cpu_num())
        except psutil.NoSuchProcess:
            continue
    return Totals(rss, threads, cpu, frozenset(cpus))
