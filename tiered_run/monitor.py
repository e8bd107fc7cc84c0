"""The monitor thread: samples the run and the host, keeps peaks and a timeline, enforces.

Shape: one thread, an Event to wake it (a breach requested from outside, or stop),
`wait(remaining)` instead of sleep so deadlines are met to the millisecond, and the
first breach wins. Enforcement is progressive: soft ceilings warn (or pause the tree
under host load), hard ceilings end the run with SIGTERM, then SIGKILL after kill-after.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tiered_run.backends.base import Backend, Usage
from tiered_run.machine import HostReader, HostState, read_cpu_busy
from tiered_run.policy import Breach, find_breach, load_breach, load_over, over_memory_high
from tiered_run.report import Event, TimelinePoint
from tiered_run.spec import Limits, OnLoad

TIMELINE_POINTS = 512
HOST_PERIOD = 1.0  # host load/pressure/memory sampling when no ceiling depends on it


def terminate_tree(backend: Backend, grace: float, hurry: threading.Event | None = None) -> int:
    """SIGTERM to every process, SIGKILL to whatever is left after `grace`. Returns how many
    processes had to be SIGKILLed."""
    backend.kill(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (remaining := backend.pids()) and time.monotonic() < deadline:
        if hurry is not None and hurry.is_set():
            break
        time.sleep(0.005)
    if remaining:
        backend.kill(signal.SIGKILL)
    return len(remaining)


@dataclass
class Timeline:
    """Samples kept at an evenly thinned resolution, never more than TIMELINE_POINTS."""

    points: list[TimelinePoint] = field(default_factory=list)
    _stride: int = 1
    _seen: int = 0

    def add(self, point: TimelinePoint) -> None:
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.points.append(point)
        if len(self.points) >= TIMELINE_POINTS:
            self.points = self.points[::2]
            self._stride *= 2


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

    def add_usage(self, usage: Usage) -> None:
        self.memory = _max(self.memory, usage.memory, usage.memory_peak)
        self.tasks = _max(self.tasks, usage.tasks, usage.tasks_peak)
        self.cpu_s = _max(self.cpu_s, usage.cpu_s)
        if usage.cpus_used is not None:
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
        self.start_time = time.monotonic()
        self.breach: Breach | None = None
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

    def start(self) -> None:
        """Start sampling; the clock has run since construction, just before the spawn."""
        self._thread.start()

    def request(self, breach: Breach) -> None:
        """End the run for `breach` unless another came first; a second request hurries."""
        with self._lock:
            if self.breach is None:
                self.breach = breach
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
        return time.monotonic() - self.start_time

    def note(self, kind: str, message: str) -> None:
        event = Event(round(self.elapsed(), 3), kind, message)
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        deadline = self._limits.timeout
        while True:
            self._tick()
            if self.breach is not None:
                self._enforce()
                return
            if self._stopping:
                return
            wait = self._interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - self.elapsed()))
            self._wake.wait(wait)
            self._wake.clear()

    def _tick(self) -> None:
        usage = self._backend.sample()
        self.peaks.add_usage(usage)
        host = self.host_last
        if (now := time.monotonic()) >= self._next_host:
            # The host is read at every sample only when a ceiling depends on it.
            self._next_host = now + self._host_period
            host = self.host_last = self._host.read()
            self.peaks.add_host(host)
            self._watch_protected()
        self.timeline.add(
            TimelinePoint(
                round(self.elapsed(), 3),
                usage.memory,
                usage.tasks,
                usage.cpu_s,
                host.load1,
                host.pressure_max,
            )
        )
        if not self.peaks.memory_high_exceeded and over_memory_high(self._limits, usage):
            self.peaks.memory_high_exceeded = True
            self.note("memory-high", "memory above the soft ceiling")
        if self.breach is None and not self._stopping:
            breach = find_breach(
                self._limits, usage, self.elapsed(), self._backend.capabilities
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
        self.killed_by_sigkill = terminate_tree(self._backend, grace, self._hurry)
        if self.killed_by_sigkill:
            self.note(
                "sigkill",
                f"{self.killed_by_sigkill} process(es) still alive {grace:g} s after SIGTERM",
            )
