"""Summing what a set of processes uses, for backends without kernel counters.

Its cost grows with the number of processes, which is why cgroup backends only fall back
to it for what their hierarchy does not count. psutil is imported on first use: it costs
start-up time that runs with kernel counters never need to pay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tiered_run.model.usage import IoCounts, MemorySplit

# A process of the tree as (pid, start time), so that a reused pid is another process.
Member = tuple[int, float]


@dataclass(frozen=True)
class Totals:
    """What live processes use together. `memory` is their proportional set size (PSS):
    a page shared by N of them counts 1/N in each, so a copy-on-write buffer shared by
    forked children counts once, as a cgroup would count it. Where a process's
    smaps_rollup cannot be read, its RSS stands in (`exact` is then False)."""

    memory: int
    split: MemorySplit
    threads: int
    cpu_s: float
    cpus: frozenset[int]
    exact: bool = True
    # (read_bytes, write_bytes) of /proc/PID/io per process: what reached a device.
    io: Mapping[Member, tuple[int, int]] = field(default_factory=dict)


def measure(pids: Iterable[int]) -> Totals:
    """PSS, threads, CPU time and last CPU of live processes; vanished ones are skipped."""
    import psutil

    memory = anon = file = shmem = threads = 0
    exact = True
    cpu = 0.0
    cpus = set()
    io: dict[Member, tuple[int, int]] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                pss = _pss(pid)
                if pss is None:
                    exact = False
                    rss = proc.memory_info().rss
                    memory, anon = memory + rss, anon + rss
                else:
                    memory += pss[0]
                    anon, file, shmem = anon + pss[1], file + pss[2], shmem + pss[3]
                threads += proc.num_threads()
                times = proc.cpu_times()
                cpu += times.user + times.system
                cpus.add(proc.cpu_num())
                counters = _io(pid)
                if counters is not None:
                    io[(pid, proc.create_time())] = counters
        except psutil.NoSuchProcess:
            continue
    split = MemorySplit(anon, file, shmem)
    return Totals(memory, split, threads, cpu, frozenset(cpus), exact, io)


def _io(pid: int) -> tuple[int, int] | None:
    """read_bytes and write_bytes of /proc/PID/io (fs/proc/base.c: do_io_accounting): the
    bytes this process (and its dead threads) made a device read or write; None where it
    cannot be read (another user's process without ptrace access, gone)."""
    try:
        with open(f"/proc/{pid}/io", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    values = dict(line.split(b": ") for line in text.splitlines() if b": " in line)
    try:
        return int(values[b"read_bytes"]), int(values[b"write_bytes"])
    except (KeyError, ValueError):
        return None


@dataclass
class IoTally:
    """The tree's I/O so far, from walks of its live processes: /proc/PID/io counts only
    the living (a reaped child's bytes go nowhere a parent shows), so each process's last
    seen figures are kept after it is gone. What a process did between the last walk and
    its exit is missed: the figures are floors, and no operations are counted."""

    seen: dict[Member, tuple[int, int]] = field(default_factory=dict)

    def add(self, io: Mapping[Member, tuple[int, int]]) -> IoCounts:
        self.seen.update(io)
        return IoCounts(
            sum(read for read, _ in self.seen.values()),
            sum(written for _, written in self.seen.values()),
        )


_PSS_KEYS = {b"Pss:": 0, b"Pss_Anon:": 1, b"Pss_File:": 2, b"Pss_Shmem:": 3}


def _pss(pid: int) -> tuple[int, int, int, int] | None:
    """(Pss, Pss_Anon, Pss_File, Pss_Shmem) in bytes from /proc/PID/smaps_rollup (Linux
    5.8+ for the split); None where it cannot be read (another user's process, gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            text = rollup.read()
    except OSError:
        return None
    values = [0, 0, 0, 0]
    for line in text.splitlines():
        key, _, rest = line.partition(b" ")
        index = _PSS_KEYS.get(key)
        if index is not None:
            values[index] = int(rest.split()[0]) * 1024
    return values[0], values[1], values[2], values[3]
