"""What a run used and what happened to it: the monitor's record, immutable once handed back.

The monitor folds every sample into `Peaks` and a `Timeline`, notes `Event`s, and at the
end hands the supervisor one frozen `Accounting`. The supervisor builds the report from it
and from its own facts (how the main process ended, the cleanup's warnings), and never
reaches into the monitor: the record is the whole interface.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field, replace

from tiered_run.model.host import HostState
from tiered_run.model.report import BeforeKill, Event, HostSummary, TimelinePoint
from tiered_run.model.usage import IoCounts, MemorySplit, Stalls, Usage
from tiered_run.policy.breaches import Breach

TIMELINE_POINTS = 512


@dataclass
class Timeline:
    """Samples kept at an evenly thinned resolution, never more than TIMELINE_POINTS.

    Thinning merges neighbours into buckets instead of dropping samples: a bucket keeps
    its start time, the maximum of each gauge (memory, tasks, load, pressure, I/O rates) and
    the last CPU time, so a one-sample spike is still in a 15-minute timeline.
    """

    points: list[TimelinePoint] = field(default_factory=list)
    _stride: int = 1
    _pending: TimelinePoint | None = None
    _in_pending: int = 0

    def add(self, point: TimelinePoint) -> None:
        self._pending = point if self._pending is None else merge_points(self._pending, point)
        self._in_pending += 1
        if self._in_pending < self._stride:
            return
        self.points.append(self._pending)
        self._pending, self._in_pending = None, 0
        if len(self.points) >= TIMELINE_POINTS:
            pairs = zip(self.points[::2], self.points[1::2], strict=False)
            merged = [merge_points(a, b) for a, b in pairs]
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged
            self._stride *= 2

    def finished(self) -> tuple[TimelinePoint, ...]:
        """Every bucket, the last one even if it is not full yet."""
        pending = () if self._pending is None else (self._pending,)
        return (*self.points, *pending)


def merge_points(first: TimelinePoint, second: TimelinePoint) -> TimelinePoint:
    return TimelinePoint(
        t=first.t,
        memory_bytes=_max(first.memory_bytes, second.memory_bytes),
        tasks=_max(first.tasks, second.tasks),
        cpu_s=second.cpu_s if second.cpu_s is not None else first.cpu_s,
        load1=_max(first.load1, second.load1),
        pressure_pct=_max(first.pressure_pct, second.pressure_pct),
        io_read_bps=_max(first.io_read_bps, second.io_read_bps),
        io_write_bps=_max(first.io_write_bps, second.io_write_bps),
    )


@dataclass(frozen=True)
class Peaks:
    """The highest of each figure over the run's samples; `with_*` return the next Peaks,
    so a copy handed out can never change under its reader."""

    memory: int | None = None
    tasks: int | None = None
    cpu_s: float | None = None
    cpus_seen: frozenset[int] = frozenset()
    cpus_known: bool = False
    load1: float = 0.0
    pressure: float | None = None
    memory_available_min: int | None = None
    protected_busy: float | None = None
    memory_high_exceeded: bool = False
    # The split of the sample with the highest use, and that use.
    split: MemorySplit | None = None
    split_of: int = 0
    # Counters that only grow: the latest (highest) reading of each.
    io: IoCounts | None = None
    cpu_throttled_s: float | None = None
    stalls: Stalls | None = None

    @property
    def unreclaimable(self) -> int | None:
        """The peak less the page cache there was at the sample nearest to it.

        A kernel peak counter has no split, and samples can miss the moment of the peak, so
        only the cache is taken off (it could be reclaimed); whatever the samples did not
        see counts as needed. Never below what a sample saw needed."""
        if self.split is None or self.memory is None:
            return None
        return max(self.split.unreclaimable, self.memory - self.split.file)

    def with_usage(self, usage: Usage) -> Peaks:
        split, split_of, memory = self.split, self.split_of, usage.memory
        if usage.memory_split is not None and memory is not None and memory >= split_of:
            split, split_of = usage.memory_split, memory
        known = bool(usage.cpus_used)  # an empty set: no process was seen, nothing is known
        return replace(
            self,
            memory=_max(self.memory, usage.memory, usage.memory_peak),
            tasks=_max(self.tasks, usage.tasks, usage.tasks_peak),
            cpu_s=_max(self.cpu_s, usage.cpu_s),
            cpus_seen=self.cpus_seen | usage.cpus_used if known else self.cpus_seen,
            cpus_known=self.cpus_known or known,
            split=split,
            split_of=split_of,
            io=_more_io(self.io, usage.io),
            cpu_throttled_s=_max(self.cpu_throttled_s, usage.cpu_throttled_s),
            stalls=_more_stalls(self.stalls, usage.stalls),
        )

    def with_host(self, host: HostState) -> Peaks:
        lowest = self.memory_available_min
        if lowest is None or host.memory_available < lowest:
            lowest = host.memory_available
        return replace(
            self,
            load1=max(self.load1, host.load1),
            pressure=_max(self.pressure, host.pressure_max),
            memory_available_min=lowest,
        )

    def with_protected_busy(self, share: float) -> Peaks:
        return replace(self, protected_busy=_max(self.protected_busy, share))


def _more_io(kept: IoCounts | None, new: IoCounts | None) -> IoCounts | None:
    """The later of two readings of counters that only grow; a final reading of a cgroup
    removed under us (all zero, or missing) does not undo what was seen."""
    if kept is None or new is None:
        return new or kept
    return IoCounts(
        _max(kept.read_bytes, new.read_bytes),
        _max(kept.write_bytes, new.write_bytes),
        _max(kept.read_ops, new.read_ops),
        _max(kept.write_ops, new.write_ops),
    )


def _more_stalls(kept: Stalls | None, new: Stalls | None) -> Stalls | None:
    if kept is None or new is None:
        return new or kept
    return Stalls(_max(kept.cpu, new.cpu), _max(kept.memory, new.memory), _max(kept.io, new.io))


def io_rates(
    before: IoCounts | None, after: IoCounts | None, seconds: float
) -> tuple[float | None, float | None]:
    """Bytes/s read and written between two readings; None without both, or no time."""
    if before is None or after is None or seconds <= 0:
        return None, None

    def rate(old: int | None, new: int | None) -> float | None:
        return None if old is None or new is None else round(max(0, new - old) / seconds)

    return rate(before.read_bytes, after.read_bytes), rate(before.write_bytes, after.write_bytes)


def _max(*values):
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass(frozen=True)
class RusageFloor:
    """What the kernel recorded for the main process and the children it waited for
    (wait4), and what the process held before exec: a sampling monitor can miss a short
    peak between two samples, and these figures are floors for it."""

    cpu_s: float
    max_rss: int  # bytes
    pre_exec_rss: int  # bytes: the copy of tiered-run the process was until exec

    @classmethod
    def from_wait4(cls, usage: resource.struct_rusage, pre_exec_rss: int) -> RusageFloor:
        return cls(usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, pre_exec_rss)

    @property
    def memory(self) -> int | None:
        """The peak RSS where it says something: it counts the pre-exec copy too, so only
        a figure above that one is the workload's."""
        return self.max_rss if self.max_rss > self.pre_exec_rss else None


@dataclass(frozen=True)
class Accounting:
    """The monitor's record of one run, handed to the supervisor once the run has ended.

    `breach` is the first hard ceiling crossed (or the interruption that ended the run),
    including one found only in the final counters; `sigkilled` how many processes were
    still alive after its ending's grace. `leftovers` counts the processes that outlived a
    main process that ended by itself (they were then ended too). `failure` says why the
    monitor itself failed, which ended the run by SIGKILL. `wall_s` runs from just before
    the spawn to the last process gone (0 when no workload was started).
    """

    peaks: Peaks
    timeline: tuple[TimelinePoint, ...]
    events: tuple[Event, ...]
    breach: Breach | None
    sigkilled: int
    leftovers: int
    failure: str | None
    host_start: HostState
    host_end: HostState
    wall_s: float
    before_kill: BeforeKill | None = None  # what --before-kill ran at the breach

    def host_summary(self, protected_cpus: tuple[int, ...]) -> HostSummary:
        peaks, start = self.peaks, self.host_start
        busy = peaks.protected_busy
        return HostSummary(
            load1_start=start.load1,
            load1_peak=max(peaks.load1, start.load1),
            load1_end=self.host_end.load1,
            pressure_peak_pct=peaks.pressure,
            memory_available_min_bytes=peaks.memory_available_min or start.memory_available,
            protected_cpus=protected_cpus,
            protected_cpu_busy_peak_pct=None if busy is None else round(busy * 100, 1),
        )
