"""How long the monitor sleeps before its next sample.

The configured interval while anything could need it; up to `QUIET_WAIT_S` while the run
is steady and the kernel holds every ceiling in force and says when one is hit (an OOM
kill wakes the monitor at once: backends.news). The wait doubles after each steady sample
and falls back to the interval as soon as anything moves, so a run that changes is
sampled as before, and one that idles costs a fraction of it.

The interval is kept, never stretched, where:
- the memory peak is sampled, not the kernel's (a spike between samples would be missed);
- a ceiling is held by the monitor alone (memory or tasks without their controller, a
  soft memory ceiling without memory.high, a host load or pressure ceiling);
- the kernel holds the memory ceiling but cannot announce its OOM kills;
- someone watches every sample (the live status line, `--timeline-csv`);
- a container runs the workload: its runtime makes and removes groups below the run's,
  and on cgroup v1 a fork refused there is counted only in that group.

`QUIET_WAIT_S` is 1 s because orphans are reaped at each host read, at most once a second
(zombies count against pids.current until then), and that period stays as it was.
"""

from __future__ import annotations

from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability, Usage

QUIET_WAIT_S = 1.0
MOVED_BYTES = 8 << 20  # memory moving by less than this (or 1/16 of it) is steady


def stretch_allowed(
    limits: Limits, capabilities: frozenset[Capability], *, announced: bool, watched: bool
) -> bool:
    """Whether this run may be sampled less often while steady (see the module)."""
    if watched or limits.load_max is not None or limits.pressure_max is not None:
        return False
    if Capability.MEMORY_PEAK not in capabilities:
        return False
    held = {
        "memory": Capability.MEMORY_LIMIT,
        "tasks_max": Capability.TASKS_LIMIT,
        "memory_high": Capability.MEMORY_HIGH,
    }
    for name, capability in held.items():
        if getattr(limits, name) is not None and capability not in capabilities:
            return False
    return limits.memory is None or announced


def next_stretch(stretch: int, before: Usage | None, now: Usage, interval: float) -> int:
    """The factor on the interval for the next wait: doubled while steady, at most
    `QUIET_WAIT_S` in all, back to 1 when anything moved."""
    if before is None or moved(before, now):
        return 1
    most = max(1, int(QUIET_WAIT_S / interval)) if interval > 0 else 1
    return min(stretch * 2, most)


def moved(before: Usage, now: Usage) -> bool:
    """A change the timeline should follow closely: memory by more than `MOVED_BYTES` (or
    1/16 of what is in use), tasks, or any kernel event counter."""
    if (before.memory is None) != (now.memory is None):
        return True
    if (
        before.memory is not None
        and now.memory is not None
        and abs(now.memory - before.memory) > max(MOVED_BYTES, now.memory // 16)
    ):
        return True
    return (
        before.tasks != now.tasks
        or before.oom_kills != now.oom_kills
        or before.tasks_refused != now.tasks_refused
        or before.memory_high_events != now.memory_high_events
    )
