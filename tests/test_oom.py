"""Whose ceiling an OOM kill came from, decided on synthetic counters, and what the run
reports for each (the kernel cases are in test_subtree.py)."""

from __future__ import annotations

from pathlib import Path

from tiered_run.backends.oom import Ancestors, OomTally, reading, tally_v1, tally_v2, with_events
from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability, Ceiling, OomSite, Usage
from tiered_run.policy.breaches import find_breach

MIB = 1 << 20
INNER = ("tiered-run-p2-000002",)


def test_v1_kill_below_at_our_ceiling_is_ours():
    # The victim sits in a nested run's memcg; only our limit was hit (our failcnt rose).
    nodes = {(): (0, 138), INNER: (1, 0)}
    assert tally_v1(nodes, run_hit=True) == OomTally(own=1)


def test_v1_kill_at_a_nested_ceiling_is_the_nested_runs():
    nodes = {(): (0, 0), INNER: (1, 76), (*INNER, "deeper"): (2, 0)}
    assert tally_v1(nodes, run_hit=False) == OomTally(nested=3)


def test_v1_kill_in_our_memcg_without_our_limit_hit_came_from_above():
    assert tally_v1({(): (1, 0)}, run_hit=False) == OomTally(enclosing=1)


def test_v1_notified_ooms_count_victims_whose_memcg_is_gone():
    # The nested run removed its memcg (and its oom_kill) before our sample.
    assert with_events(OomTally(), events=1, run_hit=True) == OomTally(own=1)
    assert with_events(OomTally(), events=1, run_hit=False) == OomTally()
    assert with_events(OomTally(own=2), events=2, run_hit=True) == OomTally(own=2)


def test_v2_local_oom_event_means_our_ceiling():
    events = {"oom": 1, "oom_kill": 1}
    assert tally_v2(events, {"oom": 1, "oom_kill": 0}, run_hit=True) == OomTally(own=1)
    # The oom event was recorded below us only: a nested ceiling.
    assert tally_v2(events, {"oom": 0, "oom_kill": 0}, run_hit=False) == OomTally(nested=1)
    # No ceiling in our tree was hit at all: above us.
    assert tally_v2({"oom_kill": 2}, {}, run_hit=False) == OomTally(enclosing=2)
    assert tally_v2({}, {}, run_hit=False) == OomTally()


def test_the_nearest_ancestor_whose_counter_rose_is_named(tmp_path: Path):
    counts = {"run-parent": 0, "outer": 5, "slice": 9}
    scope = tmp_path / "slice" / "outer" / "run-parent"
    scope.mkdir(parents=True)

    def counter(group):
        return counts.get(group.path.name)

    ancestors = Ancestors(counter, lambda group: 300 * MIB, owned=1)
    ancestors.record(scope)
    assert [g.path.name for g in ancestors.groups] == ["run-parent", "outer", "slice"]
    counts.update({"outer": 6, "slice": 10})
    assert not ancestors.owned_hit()
    assert ancestors.enclosing() == Ceiling(str(tmp_path / "slice" / "outer"), 300 * MIB)
    counts["run-parent"] = 1  # the scope around the run is part of it
    assert ancestors.owned_hit()


def test_reading_keeps_nested_kills_out():
    ancestors = Ancestors(lambda g: None, lambda g: None)
    assert reading(OomTally(nested=2), ancestors).kills == 0
    assert reading(OomTally(own=1, enclosing=1), ancestors).kills == 2
    above = reading(OomTally(enclosing=1), ancestors)
    assert (above.kills, above.site, above.ceiling) == (1, OomSite.ENCLOSING, None)


CAPS = frozenset({Capability.MEMORY_LIMIT})


def test_an_enclosing_oom_is_a_memory_outcome_that_names_the_ceiling():
    limits = Limits(cpus=(0,), memory=1 << 30)
    usage = Usage(
        oom_kills=1,
        oom_site=OomSite.ENCLOSING,
        oom_ceiling=Ceiling("/sys/fs/cgroup/memory/outer", 300 * MIB),
    )
    breach = find_breach(limits, usage, None, CAPS)
    assert breach is not None and breach.outcome is Outcome.MEMORY
    assert "300.0 MiB ceiling of enclosing cgroup /sys/fs/cgroup/memory/outer" in breach.message
    assert "not at this run's 1.0 GiB" in breach.message
    unknown = find_breach(limits, Usage(oom_kills=1, oom_site=OomSite.ENCLOSING), None, CAPS)
    assert unknown is not None and "the host's memory" in unknown.message


def test_own_oom_message_is_unchanged():
    limits = Limits(cpus=(0,), memory=300 * MIB)
    breach = find_breach(limits, Usage(oom_kills=1), None, CAPS)
    assert breach is not None
    assert breach.message == "the kernel OOM-killed 1 process at the 300.0 MiB ceiling"
