"""Summing what a set of processes uses, for backends without kernel counters.

Its cost grows with the number of processes, which is why cgroup backends only fall back
to it for what their hierarchy does not count. psutil is imported on first use: it costs
start-up time that runs with kernel counters never need to pay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    rss: int
    threads: int
    cpu_s: float
    cpus: frozenset[int]


def measure(pids: Iterable[int]) -> Totals:
    """RSS, threads, CPU time and last CPU of live processes; vanished ones are skipped."""
    import psutil

    rss = threads = 0
    cpu = 0.0
    cpus = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                times = proc.cpu_times()
                cpu += times.user + times.system
                cpus.add(proc.cpu_num())
        except psutil.NoSuchProcess:
            continue
    return Totals(rss, threads, cpu, frozenset(cpus))
