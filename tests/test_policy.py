"""Which ceiling a sample breaches, decided on synthetic samples."""

from __future__ import annotations

import pytest
from factories import host_state

from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits, OnLoad
from tiered_run.model.usage import Capability, Usage
from tiered_run.policy.breaches import find_breach, load_breach, load_over, over_memory_high

GiB = 1024**3
CPUS = (0, 1)
NOTHING = frozenset()
KERNEL_ENFORCES = frozenset({Capability.MEMORY_LIMIT, Capability.TASKS_LIMIT})


# -- timeout ----------------------------------------------------------------------------


def test_no_breach_before_the_timeout():
    limits = Limits(CPUS, timeout=8.0)
    assert find_breach(limits, Usage(), 7.999, NOTHING) is None
    assert find_breach(limits, Usage(), 0.0, NOTHING) is None


@pytest.mark.parametrize("elapsed", [8.0, 8.001, 100.0])
def test_timeout_breach_at_or_after_the_timeout(elapsed):
    breach = find_breach(Limits(CPUS, timeout=8.0), Usage(), elapsed, NOTHING)
    assert breach is not None
    assert breach.outcome is Outcome.TIMEOUT
    assert "8 s timeout" in breach.message


def test_no_timeout_means_no_timeout_breach():
    assert find_breach(Limits(CPUS), Usage(), 1e9, NOTHING) is None


def test_unknown_elapsed_is_not_a_timeout():
    assert find_breach(Limits(CPUS, timeout=1.0), Usage(), None, NOTHING) is None


# -- memory -----------------------------------------------------------------------------


def test_oom_kill_is_a_memory_breach_with_the_count():
    limits = Limits(CPUS, memory=GiB)
    breach = find_breach(limits, Usage(oom_kills=3), 1.0, KERNEL_ENFORCES)
    assert breach is not None
    assert breach.outcome is Outcome.MEMORY
    assert "3 processes" in breach.message
    assert "1.0 GiB" in breach.message


def test_oom_kill_counts_even_without_a_memory_ceiling():
    breach = find_breach(Limits(CPUS), Usage(oom_kills=1), 1.0, NOTHING)
    assert breach is not None and breach.outcome is Outcome.MEMORY
    assert "1 process" in breach.message and "process(es)" not in breach.message


def test_memory_over_ceiling_is_a_breach_when_the_kernel_does_not_enforce_it():
    breach = find_breach(Limits(CPUS, memory=GiB), Usage(memory=GiB + 1), 1.0, NOTHING)
    assert breach is not None
    assert breach.outcome is Outcome.MEMORY
    assert "above its 1.0 GiB ceiling" in breach.message


def test_memory_over_ceiling_is_left_to_the_kernel_when_it_enforces_it():
    usage = Usage(memory=2 * GiB)
    caps = frozenset({Capability.MEMORY_LIMIT})
    assert find_breach(Limits(CPUS, memory=GiB), usage, 1.0, caps) is None


def test_memory_at_the_ceiling_or_unmeasured_is_not_a_breach():
    limits = Limits(CPUS, memory=GiB)
    assert find_breach(limits, Usage(memory=GiB), 1.0, NOTHING) is None
    assert find_breach(limits, Usage(memory=None), 1.0, NOTHING) is None


def test_memory_without_a_ceiling_is_never_a_breach():
    assert find_breach(Limits(CPUS), Usage(memory=100 * GiB), 1.0, NOTHING) is None


# -- tasks ------------------------------------------------------------------------------


def test_refused_forks_are_a_tasks_breach():
    limits = Limits(CPUS, tasks_max=64)
    breach = find_breach(limits, Usage(tasks=64, tasks_refused=5), 1.0, KERNEL_ENFORCES)
    assert breach is not None
    assert breach.outcome is Outcome.TASKS
    assert "5 forks refused" in breach.message
    assert "64-task ceiling" in breach.message


def test_tasks_over_the_ceiling_are_a_breach_when_the_kernel_does_not_enforce_it():
    breach = find_breach(Limits(CPUS, tasks_max=64), Usage(tasks=65), 1.0, NOTHING)
    assert breach is not None
    assert breach.outcome is Outcome.TASKS
    assert "65 tasks" in breach.message


def test_tasks_over_the_ceiling_are_left_to_the_kernel_when_it_enforces_it():
    caps = frozenset({Capability.TASKS_LIMIT})
    assert find_breach(Limits(CPUS, tasks_max=64), Usage(tasks=65), 1.0, caps) is None


def test_tasks_at_the_ceiling_or_unmeasured_are_not_a_breach():
    limits = Limits(CPUS, tasks_max=64)
    assert find_breach(limits, Usage(tasks=64), 1.0, NOTHING) is None
    assert find_breach(limits, Usage(tasks=None), 1.0, NOTHING) is None


# -- order ------------------------------------------------------------------------------


def test_timeout_wins_over_memory_and_tasks():
    limits = Limits(CPUS, timeout=5.0, memory=GiB, tasks_max=10)
    usage = Usage(memory=2 * GiB, oom_kills=1, tasks=20, tasks_refused=1)
    breach = find_breach(limits, usage, 5.0, NOTHING)
    assert breach is not None and breach.outcome is Outcome.TIMEOUT


def test_memory_wins_over_tasks():
    limits = Limits(CPUS, memory=GiB, tasks_max=10)
    usage = Usage(memory=2 * GiB, tasks=20, tasks_refused=1)
    breach = find_breach(limits, usage, 1.0, NOTHING)
    assert breach is not None and breach.outcome is Outcome.MEMORY


def test_within_every_ceiling_is_no_breach():
    limits = Limits(CPUS, timeout=5.0, memory=GiB, tasks_max=10)
    usage = Usage(memory=GiB // 2, tasks=3)
    assert find_breach(limits, usage, 4.9, NOTHING) is None


# -- host load --------------------------------------------------------------------------


def test_load_over_the_ceiling_says_by_how_much():
    reason = load_over(Limits(CPUS, load_max=4.0), host_state(load1=6.5))
    assert reason == "host load 6.50 above 4"


def test_load_at_or_below_the_ceiling_is_fine():
    limits = Limits(CPUS, load_max=4.0)
    assert load_over(limits, host_state(load1=4.0)) is None
    assert load_over(limits, host_state(load1=1.0)) is None


def test_pressure_uses_the_worst_resource():
    limits = Limits(CPUS, pressure_max=20.0)
    reason = load_over(limits, host_state(cpu=5.0, memory=35.5, io=1.0))
    assert reason == "host memory pressure 35.5 % above 20 %"
    assert load_over(limits, host_state(cpu=20.0, memory=3.0)) is None


def test_pressure_ceiling_ignored_where_the_host_has_no_pressure_data():
    assert load_over(Limits(CPUS, pressure_max=1.0), host_state(load1=50.0)) is None


def test_no_load_ceilings_means_never_over():
    assert load_over(Limits(CPUS), host_state(load1=500.0, cpu=100.0)) is None


def test_load_breach_only_when_told_to_kill():
    over = host_state(load1=10.0)
    assert load_breach(Limits(CPUS, load_max=2.0, on_load=OnLoad.WARN), over) is None
    assert load_breach(Limits(CPUS, load_max=2.0, on_load=OnLoad.PAUSE), over) is None
    breach = load_breach(Limits(CPUS, load_max=2.0, on_load=OnLoad.KILL), over)
    assert breach is not None
    assert breach.outcome is Outcome.LOAD
    assert "host load 10.00 above 2" in breach.message


def test_no_load_breach_when_under_the_ceiling_even_with_kill():
    limits = Limits(CPUS, load_max=2.0, pressure_max=50.0, on_load=OnLoad.KILL)
    assert load_breach(limits, host_state(load1=1.0, cpu=10.0)) is None


# -- soft memory ceiling ----------------------------------------------------------------


def test_memory_high_exceeded_by_kernel_events():
    limits = Limits(CPUS, memory_high=GiB)
    assert over_memory_high(limits, Usage(memory=GiB // 2, memory_high_events=1))


def test_memory_high_exceeded_by_sampled_usage():
    limits = Limits(CPUS, memory_high=GiB)
    assert over_memory_high(limits, Usage(memory=GiB + 1))
    assert not over_memory_high(limits, Usage(memory=GiB))
    assert not over_memory_high(limits, Usage(memory=None))


def test_no_soft_ceiling_is_never_exceeded():
    assert not over_memory_high(Limits(CPUS), Usage(memory=100 * GiB, memory_high_events=9))
