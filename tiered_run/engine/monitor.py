"""The monitor thread: samples the run and the host, keeps peaks and a timeline, enforces.

Shape: one thread, an Event to wake it (a breach requested from outside, or stop),
`wait(remaining)` instead of sleep so deadlines are met to the millisecond, and the
first breach wins. Enforcement is progressive: soft ceilings warn (or pause the tree
under host load), hard ceilings end the run with SIGTERM, then SIGKILL after kill-after.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tiered_run.backends.base import Backend
from tiered_run.host.machine import HostReader, read_cpu_busy
from tiered_run.host.reaper import reap_orphans
from tiered_run.inputs.units import format_size, plural
from tiered_run.model.host import HostState
from tiered_run.model.report import Event, TimelinePoint
from tiered_run.model.spec import Limits, OnLoad
from tiered_run.model.usage import MemorySplit, Usage
from tiered_run.policy.breaches import Breach, find_breach, load_breach, load_over, over_memory_high

TIMELINE_POINTS = 512
HOST_PERIOD = 1.0  # host load/pressure/memory sampling when no ceiling depends on it


@dataclass(frozen=True)
class Ending:
    """How a run is ended gracefully: the first signal, and a process group to spare from it.

    `spare_pgrp` is tiered-run's own foreground process group at a terminal, whose members
    already got the terminal's Ctrl-C (SIGINT) or Ctrl-\\ (SIGQUIT): sending it again could
    cut short the clean-up that the first one started (pytest's summary).
    """

    signal: int = signal.SIGTERM
    spare_pgrp: int | None = None


def terminate_tree(
    backend: Backend,
    grace: float,
    hurry: threading.Event | None = None,
    ending: Ending = Ending(),
) -> int:
    """The ending signal to every process, SIGCONT so that stopped ones act on it (as
    `timeout` does), SIGKILL to whatever is left after `grace`. Returns how many processes
    had to be SIGKILLed."""
    _send(backend, ending)
    if ending.signal not in (signal.SIGKILL, signal.SIGCONT):
        backend.kill(signal.SIGCONT)
    deadline = time.monotonic() + grace
    while (remaining := backend.pids()) and time.monotonic() < deadline:
        if hurry is not None and hurry.is_set():
            break
        time.sleep(0.005)
    if remaining:
        backend.kill(signal.SIGKILL)
    return len(remaining)


def _send(backend: Backend, ending: Ending) -> None:
    if ending.spare_pgrp is None:
        backend.kill(ending.signal)
        return
    for pid in backend.pids():
        try:
            if os.getpgid(pid) != ending.spare_pgrp:
                os.kill(pid, ending.signal)
        except ProcessLookupError:
            continue


@dataclass
class Timeline:
    """Samples kept at an evenly thinned resolution, never more than TIMELINE_POINTS.

    Thinning merges neighbours into buckets instead of dropping samples: a bucket keeps
    its start time, the maximum of each gauge (memory, tasks, load, pressure) and the last
    CPU time, so a one-sample spike is still in a 15-minute timeline.
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
    )


@dataclass
class Peaks:
    memory: int | None = None
    tasks: int | None = None
    cpu_s: float | None = None
    cpus_seen: set[int] = field(default_factory=set)
    cpus_known: bool = False
    load1: float = 0.0
    pressure: float | None = None
    memory_available_min: int | None = None
    protected_busy: float | None = None
    memory_high_exceeded: bool = False
    # The split of the sample with the highest use, and that use.
    split: MemorySplit | None = None
    split_of: int = 0

    @property
    def unreclaimable(self) -> int | None:
        """The peak less the page cache there was at the sample nearest to it.

        A kernel peak counter has no split, and samples can miss the moment of the peak, so
        only the cache is taken off (it could be reclaimed); whatever the samples did not
        see counts as needed. Never below what a sample saw needed."""
        if self.split is None or self.memory is None:
            return None
        return max(self.split.unreclaimable, self.memory - self.split.file)

    def add_usage(self, usage: Usage) -> None:
        self.memory = _max(self.memory, usage.memory, usage.memory_peak)
        split = usage.memory_split
        if split is not None and usage.memory is not None and usage.memory >= self.split_of:
            self.split, self.split_of = split, usage.memory
        self.tasks = _max(self.tasks, usage.tasks, usage.tasks_peak)
        self.cpu_s = _max(self.cpu_s, usage.cpu_s)
        if usage.cpus_used:  # an empty set: no process was seen, so nothing is known
            self.cpus_known = True
            self.cpus_seen |= usage.cpus_used

    def add_host(self, host: HostState) -> None:
        self.load1 = max(self.load1, host.load1)
        self.pressure = _max(self.pressure, host.pressure_max)
        if self.memory_available_min is None or host.memory_available < self.memory_available_min:
            self.memory_available_min = host.memory_available


def _max(*values):
    present = [v for v in values if v is not None]
    return max(present) if present else None


class Monitor:
    """Samples and enforces from a thread of its own; see the module docstring.

    It cannot die quietly: an unexpected error ends the run (SIGKILL to the whole tree,
    and to the main process directly should the backend fail too) and is kept in
    `failure`, which the supervisor reports as an `error` outcome.
    """

    def __init__(
        self,
        backend: Backend,
        limits: Limits,
        interval: float,
        host: HostReader,
        protected_cpus: tuple[int, ...],
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._backend = backend
        self._limits = limits
        self._interval = interval
        self._host = host
        self._protected = protected_cpus
        self._on_event = on_event
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stopping = False
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, name="tiered-run-monitor", daemon=True)
        self._paused = False
        self._load_warned = False
        self._cpu_busy_last: dict[int, tuple[int, int]] | None = None
        self._main_pid: int | None = None
        self._ending: Ending | None = None
        self._suspended_at: float | None = None
        self._suspended_total = 0.0
        self.start_time = time.monotonic()
        self.breach: Breach | None = None
        self.failure: str | None = None
        self.killed_by_sigkill = 0
        self.events: list[Event] = []
        self.timeline = Timeline()
        self.peaks = Peaks()
        self.host_start = host.read()
        self.host_last = self.host_start
        watched = limits.load_max is not None or limits.pressure_max is not None
        self._host_period = interval if watched else max(interval, HOST_PERIOD)
        self._next_host = 0.0

    # -- called from other threads ---------------------------------------------------------

    def start(self, main_pid: int) -> None:
        """Start sampling; the clock has run since construction, just before the spawn."""
        self._main_pid = main_pid
        self._thread.start()

    def request(self, breach: Breach, ending: Ending | None = None) -> None:
        """End the run for `breach` unless another came first; a second request hurries.

        `ending` overrides the tier's ending signal (a signal to tiered-run is passed on as
        itself, as `timeout` does)."""
        with self._lock:
            if self.breach is None:
                self.breach = breach
                self._ending = ending
            else:
                self._hurry.set()
        self._wake.set()

    def stop(self) -> None:
        """Sample once more and end; waits for an escalation in progress to finish."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def elapsed(self) -> float:
        """Wall time since just before the spawn, seconds."""
        return time.monotonic() - self.start_time

    def active(self) -> float:
        """Wall time minus the time the run was stopped by job control: what the timeout counts."""
        now = self._suspended_at if self._suspended_at is not None else time.monotonic()
        return now - self.start_time - self._suspended_total

    def suspend(self, why: str) -> None:
        """The run is being stopped (Ctrl-Z): the timeout stops counting until `resume`."""
        with self._lock:
            if self._suspended_at is None:
                self._suspended_at = time.monotonic()
        self.note("stopped", why)

    def resume(self, why: str) -> None:
        with self._lock:
            if self._suspended_at is not None:
                stopped = time.monotonic() - self._suspended_at
                self._suspended_total += stopped
                self._suspended_at = None
                why = f"{why} after {stopped:.1f} s stopped"
        self.note("continued", why)
        self._wake.set()

    @property
    def load_paused(self) -> bool:
        """Whether the tree is frozen because of host load (`--on-load pause`)."""
        return self._paused

    def note(self, kind: str, message: str) -> None:
        event = Event(round(self.elapsed(), 3), kind, message)
        self.events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # showing an event must never cost enforcement
                self._on_event = None

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:
            self.failure = f"{type(err).__name__}: {' '.join(str(err).split())}"
            self._kill_everything()

    def _loop(self) -> None:
        deadline = self._limits.timeout
        while True:
            self._tick()
            if self.breach is not None:
                self._enforce()
                return
            if self._stopping:
                return
            wait = self._interval
            if deadline is not None and self._suspended_at is None:
                wait = max(0.0, min(wait, deadline - self.active()))
            self._wake.wait(wait)
            self._wake.clear()

    def _kill_everything(self) -> None:
        """A failed monitor cannot guard the run, so the run ends now, by SIGKILL."""
        try:
            self.note("error", f"the monitor failed ({self.failure}); ending the run")
        except BaseException:
            pass
        try:
            self._backend.kill(signal.SIGKILL)
        except BaseException:
            pass
        if self._main_pid is not None:
            try:
                os.kill(self._main_pid, signal.SIGKILL)
            except OSError:
                pass

    def _tick(self) -> None:
        usage = self._backend.sample()
        self.peaks.add_usage(usage)
        host = self.host_last
        fresh = (now := time.monotonic()) >= self._next_host
        if fresh:
            # The host is read at every sample only when a ceiling depends on it.
            self._next_host = now + self._host_period
            host = self.host_last = self._host.read()
            self.peaks.add_host(host)
            self._watch_protected()
            # Orphans that died count against pids.current until reaped.
            reap_orphans(keep=() if self._main_pid is None else (self._main_pid,))
        self.timeline.add(
            TimelinePoint(
                round(self.elapsed(), 3),
                usage.memory,
                usage.tasks,
                usage.cpu_s,
                # Between host reads there is no host sample: none is made up.
                host.load1 if fresh else None,
                host.pressure_max if fresh else None,
            )
        )
        if not self.peaks.memory_high_exceeded and over_memory_high(self._limits, usage):
            self.peaks.memory_high_exceeded = True
            used = format_size(usage.memory) if usage.memory is not None else "memory"
            ceiling = format_size(self._limits.memory_high or 0)
            self.note("memory-high", f"{used} is above the {ceiling} soft ceiling")
        if self.breach is None and not self._stopping:
            breach = find_breach(
                self._limits, usage, self.active(), self._backend.capabilities
            ) or load_breach(self._limits, host)
            if breach is not None:
                self.request(breach)
            else:
                self._soft_load(host)

    def _soft_load(self, host: HostState) -> None:
        over = load_over(self._limits, host)
        if self._limits.on_load is OnLoad.PAUSE:
            if over and not self._paused:
                self._backend.freeze(True)
                self._paused = True
                self.note("pause", f"{over}: tree frozen until the host recovers")
            elif not over and self._paused:
                self._backend.freeze(False)
                self._paused = False
                self.note("resume", "host back under its load ceiling: tree thawed")
        elif over and not self._load_warned:
            self._load_warned = True
            self.note("load", over)

    def _watch_protected(self) -> None:
        if not self._protected:
            return
        now = read_cpu_busy()
        last, self._cpu_busy_last = self._cpu_busy_last, now
        if last is None:
            return
        for cpu in self._protected:
            if cpu in now and cpu in last:
                busy = now[cpu][0] - last[cpu][0]
                total = now[cpu][1] - last[cpu][1]
                if total > 0:
                    self.peaks.protected_busy = _max(self.peaks.protected_busy, busy / total)

    def _enforce(self) -> None:
        assert self.breach is not None
        self.note(self.breach.outcome.value, self.breach.message)
        if self._paused:
            self._backend.freeze(False)
            self._paused = False
        grace = 0.0 if self._hurry.is_set() else self._limits.kill_after
        ending = self._ending or Ending(self._limits.stop_signal)
        self.killed_by_sigkill = terminate_tree(self._backend, grace, self._hurry, ending)
        if self.killed_by_sigkill:
            still = plural(self.killed_by_sigkill, "process")
            self.note(
                "sigkill",
                f"{still} still alive {grace:g} s after {signal.Signals(ending.signal).name}",
            )
