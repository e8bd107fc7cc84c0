"""The monitor thread: samples the run and the host, keeps peaks and a timeline, enforces.

Shape: one thread, an Event to wake it (a breach requested from outside, or stop),
`wait(remaining)` instead of sleep so deadlines are met to the millisecond, and the
first breach wins. Enforcement is progressive: soft ceilings warn (or pause the tree
under host load), hard ceilings end the run with SIGTERM, then SIGKILL after kill-after.

The monitor owns everything it measures and enforces, and the supervisor talks to it only
through this API: `start`, `request` (a breach from outside: a signal), `suspend` and
`resume` (job control), `note`, then `stop`, `end_leftovers` and `finish`, which hands back
the run's `Accounting`. The clock and the wait are injected, so that a test can drive a
whole run with a fake backend, a fake host and a fake clock.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from tiered_run.backends.base import Backend
from tiered_run.engine.accounting import Accounting, Peaks, RusageFloor, Timeline, io_rates
from tiered_run.engine.ending import Clock, Ending, Wait, terminate_tree
from tiered_run.engine.waker import Waker
from tiered_run.host.reaper import reap_orphans
from tiered_run.inputs.units import format_size, plural
from tiered_run.model.host import HostState
from tiered_run.model.report import BeforeKill, Event, Outcome, TimelinePoint
from tiered_run.model.spec import Limits, OnLoad
from tiered_run.model.usage import Capability, Usage
from tiered_run.policy.breaches import Breach, find_breach, load_breach, load_over, over_memory_high
from tiered_run.policy.cadence import next_stretch, stretch_allowed

HOST_PERIOD = 1.0  # host load/pressure/memory sampling when no ceiling depends on it
# Outcomes of a hard ceiling: each gets its event, also one found only in the final counters.
CEILING_OUTCOMES = (Outcome.MEMORY, Outcome.TASKS, Outcome.TIMEOUT, Outcome.LOAD)


class HostSource(Protocol):
    """What the monitor reads of the host (`host.machine.HostReader`, or a test's fake)."""

    def read(self) -> HostState: ...

    def cpu_busy(self) -> dict[int, tuple[int, int]]: ...


class Monitor:
    """Samples and enforces from a thread of its own; see the module docstring.

    It cannot die quietly: an unexpected error ends the run (SIGKILL to the whole tree,
    and to the main process directly should the backend fail too) and is kept as the
    record's `failure`, which the supervisor reports as an `error` outcome.
    """

    def __init__(
        self,
        backend: Backend,
        limits: Limits,
        interval: float,
        host: HostSource,
        protected_cpus: tuple[int, ...] = (),
        on_event: Callable[[Event], None] | None = None,
        *,
        clock: Clock = time.monotonic,
        wait: Wait = threading.Event.wait,
        before_kill: Callable[[threading.Event], BeforeKill] | None = None,
        on_sample: Callable[[TimelinePoint], None] | None = None,
        every_sample: bool = False,
    ) -> None:
        """`before_kill`: what to run at a ceiling's breach before the first ending signal
        (`engine.before_kill`), given the event that a hurried end sets. `on_sample` gets
        every sample as taken, at full resolution (the timeline is thinned); like
        `on_event` it must only hand the sample on (a queue, a list), never block.
        `every_sample`: keep the interval while steady too (policy.cadence)."""
        self._backend = backend
        self._limits = limits
        self._interval = interval
        self._host = host
        self._protected = protected_cpus
        self._on_event = on_event
        self._before_kill = before_kill
        self._on_sample = on_sample
        self._every_sample = every_sample
        self._looked: BeforeKill | None = None
        self._clock = clock
        self._wait = wait
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
        self._start_time = clock()
        self._wall: float | None = None
        self._breach: Breach | None = None
        self._failure: str | None = None
        self._sigkilled = 0
        self._leftovers = 0
        self._events: list[Event] = []
        self._timeline = Timeline()
        self._peaks = Peaks()
        self._last_t = 0.0  # when the last sample was taken, for the I/O rates
        self._host_start = self._host_last = host.read()
        watched = limits.load_max is not None or limits.pressure_max is not None
        self._host_period = interval if watched else max(interval, HOST_PERIOD)
        self._next_host = 0.0
        self._stretch = 1  # the next wait is this many intervals (policy.cadence)
        self._may_stretch = False
        self._last_usage: Usage | None = None
        self._waker: Waker | None = None

    # -- called from other threads ---------------------------------------------------------

    def start(self, main_pid: int) -> None:
        """Start sampling; the clock has run since construction, just before the spawn."""
        self._main_pid = main_pid
        self._waker = Waker.started(self._backend.news(), self._wake)
        self._may_stretch = stretch_allowed(
            self._limits,
            self._backend.capabilities,
            announced=self._waker is not None,
            watched=self._on_sample is not None or self._every_sample,
        )
        self._thread.start()

    def request(self, breach: Breach, ending: Ending | None = None) -> None:
        """End the run for `breach` unless another came first; a second request hurries.

        `ending` overrides the tier's ending signal (a signal to tiered-run is passed on as
        itself, as `timeout` does)."""
        with self._lock:
            if self._breach is None:
                self._breach = breach
                self._ending = ending
            else:
                self._hurry.set()
        self._wake.set()

    def elapsed(self) -> float:
        """Wall time since just before the spawn, seconds."""
        return self._clock() - self._start_time

    def active(self) -> float:
        """Wall time minus the time the run was stopped by job control: what the timeout counts."""
        now = self._suspended_at if self._suspended_at is not None else self._clock()
        return now - self._start_time - self._suspended_total

    def suspend(self, why: str) -> None:
        """The run is being stopped (Ctrl-Z): the timeout stops counting until `resume`."""
        with self._lock:
            if self._suspended_at is None:
                self._suspended_at = self._clock()
        self.note("stopped", why)

    def resume(self, why: str) -> None:
        with self._lock:
            if self._suspended_at is not None:
                stopped = self._clock() - self._suspended_at
                self._suspended_total += stopped
                self._suspended_at = None
                why = f"{why} after {stopped:.1f} s stopped"
        self.note("continued", why)
        self._wake.set()

    @property
    def load_paused(self) -> bool:
        """Whether the tree is frozen because of host load (`--on-load pause`)."""
        return self._paused

    @property
    def looked(self) -> BeforeKill | None:
        """What --before-kill ran at the breach, once it has run."""
        return self._looked

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def note(self, kind: str, message: str) -> None:
        """An event of the run, at the time it happens (shown at once with `-v`)."""
        event = Event(round(self.elapsed(), 3), kind, message)
        self._events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # showing an event must never cost enforcement
                self._on_event = None

    # -- the end, from the supervisor once the main process was waited for -----------------

    def stop(self) -> None:
        """Sample once more and end; waits for an escalation in progress to finish."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._waker is not None:
            self._waker.stop()
            self._waker = None

    def end_leftovers(self) -> None:
        """After `stop`: end the processes that outlived the main one, gracefully (the tier's
        ending signal, SIGKILL after kill-after). After a breach they are part of what the
        breach ended, not leftovers. The run's wall time ends here, with its last process."""
        remaining = self._backend.pids()
        if remaining:
            if self._breach is None:
                self._leftovers = len(remaining)
                self.note("leftovers", f"{plural(len(remaining), 'process')} outlived the main one")
            ending = Ending(self._limits.stop_signal)
            self._terminate(self._limits.kill_after, ending)
        self._wall = self.elapsed()

    def finish(self, final: Usage | None = None, floor: RusageFloor | None = None) -> Accounting:
        """The run's record, after `stop` and `end_leftovers` (or without a start, for a run
        whose workload never started). `final` is the counters read once the tree is gone,
        `floor` what wait4 recorded for the main process; both count as samples. A breach
        that only the final counters show (a kernel OOM kill of the main process itself)
        is the run's breach, and every ceiling's breach gets its event."""
        peaks = self._peaks
        breach = self._breach
        if self._main_pid is not None:
            peaks = peaks.with_usage(Usage(tasks=1))  # it ran, whether or not a sample saw it
        if floor is not None:
            peaks = peaks.with_usage(Usage(cpu_s=floor.cpu_s))
        if final is not None and self._failure is None:
            if floor is not None and floor.memory is not None and not self._kernel_peak():
                final = replace(final, memory=max(final.memory or 0, floor.memory))
            peaks = peaks.with_usage(final)
            if breach is None:
                # A ceiling only the monitor holds is judged on the peaks, the last sample
                # (taken as the main process ended, with no check of its own) included.
                seen = replace(final, memory=peaks.memory, tasks=peaks.tasks)
                breach = find_breach(self._limits, seen, None, self._backend.capabilities)
        if (
            breach is not None
            and self._failure is None
            and breach.outcome in CEILING_OUTCOMES
            and not any(event.kind == breach.outcome.value for event in self._events)
        ):
            self.note(breach.outcome.value, breach.message)
        self._peaks = peaks
        return Accounting(
            peaks=peaks,
            timeline=self._timeline.finished(),
            events=tuple(self._events),
            breach=breach,
            sigkilled=self._sigkilled,
            leftovers=self._leftovers,
            failure=self._failure,
            host_start=self._host_start,
            host_end=self._host_last,
            wall_s=self._wall_s(),
            before_kill=self._looked,
        )

    def _wall_s(self) -> float:
        if self._main_pid is None:
            return 0.0
        return self._wall if self._wall is not None else self.elapsed()

    def _kernel_peak(self) -> bool:
        return Capability.MEMORY_PEAK in self._backend.capabilities

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:
            self._failure = f"{type(err).__name__}: {' '.join(str(err).split())}"
            self._kill_everything()

    def _loop(self) -> None:
        deadline = self._limits.timeout
        while True:
            self._tick()
            if self._breach is not None:
                self._enforce()
                return
            if self._stopping:
                return
            wait = self._interval * self._stretch
            if deadline is not None and self._suspended_at is None:
                wait = max(0.0, min(wait, deadline - self.active()))
            self._wait(self._wake, wait)
            self._wake.clear()

    def _kill_everything(self) -> None:
        """A failed monitor cannot guard the run, so the run ends now, by SIGKILL."""
        try:
            self.note("error", f"the monitor failed ({self._failure}); ending the run")
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
        if self._may_stretch:
            self._stretch = next_stretch(self._stretch, self._last_usage, usage, self._interval)
            self._last_usage = usage
        before, self._peaks = self._peaks, self._peaks.with_usage(usage)
        elapsed = self.elapsed()
        read_bps, write_bps = io_rates(before.io, self._peaks.io, elapsed - self._last_t)
        self._last_t = elapsed
        host = self._host_last
        fresh = (now := self._clock()) >= self._next_host
        if fresh:
            # The host is read at every sample only when a ceiling depends on it.
            self._next_host = now + self._host_period
            host = self._host_last = self._host.read()
            self._peaks = self._peaks.with_host(host)
            self._watch_protected()
            # Orphans that died count against pids.current until reaped.
            reap_orphans(keep=() if self._main_pid is None else (self._main_pid,))
        point = TimelinePoint(
            round(elapsed, 3),
            usage.memory,
            usage.tasks,
            usage.cpu_s,
            # Between host reads there is no host sample: none is made up.
            host.load1 if fresh else None,
            host.pressure_max if fresh else None,
            read_bps,
            write_bps,
        )
        self._timeline.add(point)
        if self._on_sample is not None:
            try:
                self._on_sample(point)
            except Exception:  # showing a sample must never cost enforcement
                self._on_sample = None
        if not self._peaks.memory_high_exceeded and over_memory_high(self._limits, usage):
            self._peaks = replace(self._peaks, memory_high_exceeded=True)
            used = format_size(usage.memory) if usage.memory is not None else "memory"
            ceiling = format_size(self._limits.memory_high or 0)
            self.note("memory-high", f"{used} is above the {ceiling} soft ceiling")
        if self._breach is None and not self._stopping:
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
        now = self._host.cpu_busy()
        last, self._cpu_busy_last = self._cpu_busy_last, now
        if last is None:
            return
        for cpu in self._protected:
            if cpu in now and cpu in last:
                busy = now[cpu][0] - last[cpu][0]
                total = now[cpu][1] - last[cpu][1]
                if total > 0:
                    self._peaks = self._peaks.with_protected_busy(busy / total)

    def _enforce(self) -> None:
        assert self._breach is not None
        self.note(self._breach.outcome.value, self._breach.message)
        if self._paused:
            self._backend.freeze(False)
            self._paused = False
        if self._before_kill is not None and self._breach.outcome in CEILING_OUTCOMES:
            # Bounded (engine.before_kill): the ending below is delayed, never skipped.
            self._looked = self._before_kill(self._hurry)
            self.note("before-kill", self._looked.summary())
        grace = 0.0 if self._hurry.is_set() else self._limits.kill_after
        ending = self._ending or Ending(self._limits.stop_signal)
        self._sigkilled = self._terminate(grace, ending, self._hurry)
        if self._sigkilled:
            still = plural(self._sigkilled, "process")
            self.note(
                "sigkill",
                f"{still} still alive {grace:g} s after {signal.Signals(ending.signal).name}",
            )

    def _terminate(self, grace: float, ending: Ending, hurry: threading.Event | None = None) -> int:
        return terminate_tree(
            self._backend, grace, hurry, ending, clock=self._clock, wait=self._wait
        )
