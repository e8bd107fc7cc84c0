"""When the monitor may sample less often: pure decisions on synthetic samples."""

from __future__ import annotations

from tiered_run.model.spec import Limits
from tiered_run.model.usage import CONTAINING, Capability, Usage
from tiered_run.policy.cadence import moved, next_stretch, stretch_allowed

MiB = 1 << 20
KERNEL = CONTAINING | {Capability.MEMORY_HIGH, Capability.MEMORY_PEAK}


def ceilings(**given: object) -> Limits:
    return Limits(cpus=(0,), **given)  # type: ignore[arg-type]


def test_a_run_the_kernel_holds_and_announces_may_stretch():
    limits = Limits(cpus=(0,), memory=512 * MiB, tasks_max=100, timeout=60.0)
    assert stretch_allowed(limits, KERNEL, announced=True, watched=False)


def test_a_ceiling_only_the_monitor_holds_keeps_the_interval():
    for limits in (
        ceilings(memory=512 * MiB),
        ceilings(tasks_max=100),
        ceilings(memory_high=256 * MiB),
    ):
        assert not stretch_allowed(limits, frozenset(), announced=True, watched=False), limits


def test_a_sampled_memory_peak_keeps_the_interval():
    capabilities = KERNEL - {Capability.MEMORY_PEAK}
    assert not stretch_allowed(ceilings(), capabilities, announced=True, watched=False)


def test_host_ceilings_keep_the_interval():
    for limits in (ceilings(load_max=4.0), ceilings(pressure_max=20.0)):
        assert not stretch_allowed(limits, KERNEL, announced=True, watched=False)


def test_an_unannounced_oom_or_a_watcher_keeps_the_interval():
    limits = ceilings(memory=512 * MiB)
    assert not stretch_allowed(limits, KERNEL, announced=False, watched=False)
    assert not stretch_allowed(ceilings(), KERNEL, announced=True, watched=True)
    assert stretch_allowed(ceilings(tasks_max=10), KERNEL, announced=False, watched=False)


def test_the_wait_doubles_while_steady_up_to_a_second():
    steady = Usage(memory=100 * MiB, tasks=3)
    stretches = [1]
    for _ in range(5):
        stretches.append(next_stretch(stretches[-1], steady, steady, 0.25))
    assert stretches == [1, 2, 4, 4, 4, 4]
    assert next_stretch(1, steady, steady, 1.0) == 1  # an interval of 1 s is never stretched
    assert next_stretch(4, None, steady, 0.25) == 1  # the first sample


def test_anything_that_moves_brings_the_interval_back():
    before = Usage(memory=100 * MiB, tasks=3)
    for now in (
        Usage(memory=120 * MiB, tasks=3),
        Usage(memory=100 * MiB, tasks=4),
        Usage(memory=100 * MiB, tasks=3, oom_kills=1),
        Usage(memory=100 * MiB, tasks=3, tasks_refused=1),
        Usage(memory=100 * MiB, tasks=3, memory_high_events=1),
        Usage(memory=None, tasks=3),
    ):
        assert moved(before, now), now
        assert next_stretch(4, before, now, 0.25) == 1
    assert not moved(before, Usage(memory=104 * MiB, tasks=3))  # page-cache noise
