"""The monitor on its own, driven by a fake backend, a fake host and a fake clock.

Time passes only when the monitor waits, so a 5 s timeout or a 2 s grace takes no wall
time and lands on the exact fake second; nothing here asserts how long anything took.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import threading

from tiered_run.backends.base import Backend, Probe
from tiered_run.engine.accounting import RusageFloor
from tiered_run.engine.monitor import Monitor
from tiered_run.model.host import HostState
from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits, OnLoad
from tiered_run.model.usage import Capability, Usage

# Above the kernel's largest pid (2^22), so no real process ever gets a signal from a test.
MAIN = 2**22 + 1
GiB = 1024**3
BOUND_S = 30  # only so that a broken monitor fails the test instead of hanging it
SAMPLE = Usage(memory=GiB // 4, tasks=1)


class FakeClock:
    """Seconds that pass only in `wait`. Past `horizon` a wait blocks for real until the
    monitor is woken (stop, request), and `parked` tells the test it got there."""

    def __init__(self, horizon: float = math.inf) -> None:
        self.now = 0.0
        self.horizon = horizon
        self.parked = threading.Event()

    def __call__(self) -> float:
        return self.now

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        if self.now + seconds > self.horizon:
            self.parked.set()
            return event.wait(BOUND_S)
        self.now += seconds
        return event.is_set()


class FakeBackend(Backend):
    """One process that dies of SIGKILL, and of SIGTERM unless it ignores it."""

    name = "fake"

    def __init__(
        self,
        usage: Usage = SAMPLE,
        ignores_term: bool = False,
        fails_after: int | None = None,
        capabilities: frozenset[Capability] = frozenset(),
    ) -> None:
        self.usage = usage
        self.ignores_term = ignores_term
        self.fails_after = fails_after
        self.capabilities = capabilities
        self.alive = True
        self.samples = 0
        self.signals: list[int] = []
        self.frozen: list[bool] = []
        self.signalled = threading.Event()

    @classmethod
    def _probe(cls) -> Probe:
        return Probe(True, "a fake")

    def create(self, run_id: str, limits: Limits) -> None:
        pass

    def attach(self) -> None:
        pass

    def started(self, pid: int) -> None:
        pass

    def sample(self) -> Usage:
        self.samples += 1
        if self.fails_after is not None and self.samples > self.fails_after:
            raise RuntimeError("counter file\nvanished")
        return self.usage

    def pids(self) -> list[int]:
        return [MAIN] if self.alive else []

    def kill(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self.ignores_term):
            self.alive = False
        if sig != signal.SIGCONT:
            self.signalled.set()

    def freeze(self, frozen: bool) -> None:
        self.frozen.append(frozen)

    def remove(self) -> None:
        pass


class FakeHost:
    """Host reads from a script of loads; the last one repeats."""

    def __init__(self, loads: tuple[float, ...] = (0.5,)) -> None:
        self.loads = loads
        self.reads = 0

    def read(self) -> HostState:
        load = self.loads[min(self.reads, len(self.loads) - 1)]
        self.reads += 1
        return HostState(load1=load, memory_available=8 * GiB, pressure={})

    def cpu_busy(self) -> dict[int, tuple[int, int]]:
        return {}


def monitor_for(
    backend: FakeBackend, clock: FakeClock, host: FakeHost | None = None, **limits: object
) -> Monitor:
    ceilings = Limits(cpus=(0,), **limits)  # type: ignore[arg-type]
    return Monitor(backend, ceilings, 0.25, host or FakeHost(), clock=clock, wait=clock.wait)


def kinds(events) -> list[str]:
    return [event.kind for event in events]


def test_timeout_ends_the_tree_at_the_exact_second():
    backend, clock = FakeBackend(), FakeClock()
    monitor = monitor_for(backend, clock, timeout=5.0)
    monitor.start(MAIN)
    assert backend.signalled.wait(BOUND_S)
    monitor.stop()
    monitor.end_leftovers()
    record = monitor.finish(Usage(), None)
    assert record.breach is not None and record.breach.outcome is Outcome.TIMEOUT
    assert kinds(record.events) == ["timeout"]
    assert record.events[0].t == 5.0
    assert backend.signals == [signal.SIGTERM, signal.SIGCONT]
    assert record.sigkilled == 0 and record.leftovers == 0
    assert record.failure is None
    assert record.wall_s == 5.0


def test_what_ignores_the_ending_signal_is_sigkilled_after_the_grace():
    backend, clock = FakeBackend(ignores_term=True), FakeClock()
    monitor = monitor_for(backend, clock, timeout=5.0, kill_after=2.0)
    monitor.start(MAIN)
    assert backend.signalled.wait(BOUND_S)
    monitor.stop()  # waits for the escalation in progress
    record = monitor.finish(Usage(), None)
    assert backend.signals == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]
    assert record.sigkilled == 1
    assert kinds(record.events) == ["timeout", "sigkill"]
    assert record.events[1].message == "1 process still alive 2 s after SIGTERM"
    assert record.events[1].t >= 7.0


def test_a_failing_sample_ends_the_run_and_is_the_records_failure():
    backend, clock = FakeBackend(fails_after=3), FakeClock()
    monitor = monitor_for(backend, clock, timeout=60.0)
    monitor.start(MAIN)
    assert backend.signalled.wait(BOUND_S)
    monitor.stop()
    assert monitor.failed
    monitor.end_leftovers()
    record = monitor.finish(None, None)
    assert record.failure == "RuntimeError: counter file vanished"
    assert backend.signals == [signal.SIGKILL]
    assert kinds(record.events) == ["error"]
    assert record.breach is None
    assert len(record.timeline) == 3  # the samples before the failing one


def test_host_load_pauses_the_tree_and_resumes_it_when_the_host_recovers():
    backend, clock = FakeBackend(), FakeClock(horizon=10.0)
    host = FakeHost((1.0, 1.0, 9.0, 9.0, 9.0, 1.0))
    monitor = monitor_for(backend, clock, host, load_max=4.0, on_load=OnLoad.PAUSE)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    backend.alive = False  # the main process ended by itself
    monitor.stop()
    monitor.end_leftovers()
    record = monitor.finish(Usage(), None)
    assert backend.frozen == [True, False]
    assert kinds(record.events) == ["pause", "resume"]
    assert record.events[0].message == "host load 9.00 above 4: tree frozen until the host recovers"
    assert record.breach is None
    assert record.peaks.load1 == 9.0
    assert not backend.signals


def test_what_outlives_the_main_process_is_ended_and_counted():
    backend, clock = FakeBackend(), FakeClock(horizon=1.0)
    monitor = monitor_for(backend, clock)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    monitor.stop()
    monitor.end_leftovers()  # MAIN stands in for a daemon the workload left behind
    record = monitor.finish(Usage(), None)
    assert record.leftovers == 1
    assert kinds(record.events) == ["leftovers"]
    assert backend.signals == [signal.SIGTERM, signal.SIGCONT]


def test_the_final_counters_and_wait4_are_floors_of_the_record():
    backend = FakeBackend(usage=Usage(memory=100 << 20, tasks=None))
    clock = FakeClock(horizon=0.0)
    monitor = monitor_for(backend, clock, memory=1 * GiB)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    backend.alive = False
    monitor.stop()
    monitor.end_leftovers()
    floor = RusageFloor(cpu_s=1.5, max_rss=300 << 20, pre_exec_rss=20 << 20)
    record = monitor.finish(Usage(oom_kills=1), floor)
    # A kernel OOM kill seen only in the final counters is the run's breach, with its event.
    assert record.breach is not None and record.breach.outcome is Outcome.MEMORY
    assert kinds(record.events) == ["memory"]
    assert record.peaks.memory == 300 << 20  # the main process's peak RSS, above the samples
    assert record.peaks.cpu_s == 1.5
    assert record.peaks.tasks == 1  # the main process ran, whether or not a sample saw it


def test_a_kernel_peak_is_not_lowered_or_raised_by_wait4():
    backend = FakeBackend(capabilities=frozenset({Capability.MEMORY_PEAK}))
    clock = FakeClock(horizon=0.0)
    monitor = monitor_for(backend, clock)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    backend.alive = False
    monitor.stop()
    monitor.end_leftovers()
    floor = RusageFloor(cpu_s=0.0, max_rss=3 * GiB, pre_exec_rss=20 << 20)
    record = monitor.finish(Usage(memory_peak=GiB // 2), floor)
    assert record.peaks.memory == GiB // 2


def test_a_run_that_never_started_has_an_empty_record():
    monitor = monitor_for(FakeBackend(), FakeClock())
    record = monitor.finish()
    assert record.wall_s == 0.0
    assert record.events == () and record.timeline == ()
    assert record.peaks.memory is None and record.peaks.tasks is None
    assert record.host_start == record.host_end


class FakeNewsBackend(FakeBackend):
    """A backend whose kernel would announce OOM kills (the fake announces none); from
    sample `grows_at` on, the tree uses 100 MiB more."""

    grows_at = 6

    def sample(self) -> Usage:
        usage = super().sample()
        if self.samples >= self.grows_at:
            return Usage(memory=(usage.memory or 0) + (100 << 20), tasks=usage.tasks)
        return usage

    def news(self):
        from tiered_run.backends.news import KernelNews

        news = KernelNews()
        news._eventfds.append(os.eventfd(0))  # never written: no news in this test
        return news


KERNEL_HELD = frozenset(
    {Capability.CPUSET, Capability.MEMORY_LIMIT, Capability.TASKS_LIMIT, Capability.MEMORY_PEAK}
)


def test_a_steady_run_is_sampled_less_often_and_closely_again_once_it_moves():
    kernel = KERNEL_HELD
    backend, clock = FakeNewsBackend(capabilities=kernel), FakeClock(horizon=10.0)
    monitor = monitor_for(backend, clock, memory=GiB, tasks_max=100)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    times = [point.t for point in monitor.finish(Usage(), None).timeline]
    # 0.25 s, then 0.5 s, then 1 s apart while nothing moves; the 6th sample sees the
    # tree grow, and the next comes 0.25 s later.
    assert times[:9] == [0.0, 0.25, 0.75, 1.75, 2.75, 3.75, 4.0, 4.5, 5.5]
    assert max(b - a for a, b in itertools.pairwise(times)) == 1.0
    monitor.stop()


def test_a_run_whose_oom_kills_are_not_announced_keeps_its_interval():
    kernel = KERNEL_HELD
    backend, clock = FakeBackend(capabilities=kernel), FakeClock(horizon=3.0)
    monitor = monitor_for(backend, clock, memory=GiB)
    monitor.start(MAIN)
    assert clock.parked.wait(BOUND_S)
    times = [point.t for point in monitor.finish(Usage(), None).timeline]
    assert {round(b - a, 3) for a, b in itertools.pairwise(times)} == {0.25}
    monitor.stop()
