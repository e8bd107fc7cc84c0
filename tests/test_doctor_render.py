"""doctor's table: findings by area, a fix only where something is to be done, the tier's
ceilings with what holds them, a verdict that says the exit code; safe on a terminal."""

from __future__ import annotations

from tiered_run.model.findings import (
    CeilingCheck,
    Diagnosis,
    Finding,
    Guard,
    Severity,
    TierCheck,
)
from tiered_run.render.doctor import render_doctor, verdict

MEMORY = CeilingCheck("memory", "memory", 2**30, "1.0 GiB", Guard.KERNEL, "cgroup v2 memory.max")
SOFT = CeilingCheck("memory_high", "memory_high", 2**29, "512 MiB", Guard.MONITOR, "the monitor")


def diagnosis(*ceilings: CeilingCheck, blockers: tuple[str, ...] = ()) -> Diagnosis:
    findings = (
        Finding("a.ok", "cgroups", Severity.OK, "fine", "it works", "never shown"),
        Finding("b.bad", "memory", Severity.PROBLEM, "bad \x1b[31mred", "it hangs", "echo 0"),
    )
    tier = TierCheck("batch", "t.toml", True, (1, 2), ceilings, blockers)
    return Diagnosis(findings, tier, {"kernel": "6.1", "cpus_online": [0, 1, 2]})


def test_findings_by_area_with_a_fix_only_where_needed():
    text = render_doctor(diagnosis(MEMORY))
    assert "never shown" not in text
    assert "  PROBLEM  bad \\x1b[31mred\n" in text  # shown, not acted on
    assert "           fix: echo 0\n" in text
    assert text.index("cgroups\n") < text.index("memory\n")
    assert "default tier 'batch' (from t.toml) on CPUs 1-2" in text
    assert text.endswith("tier 'batch': every ceiling it sets is held here (exit 0)\n")


def test_the_verdict_says_what_the_exit_code_means():
    assert verdict(diagnosis(MEMORY, SOFT)) == (
        "tier 'batch': memory_high not held by the kernel or by design here; see the table (exit 1)"
    )
    assert verdict(diagnosis(blockers=("CPUs 4-7 are not online",))).endswith("(exit 1)")
    assert verdict(Diagnosis((), None)).endswith("the config cannot be read (exit 1)")
