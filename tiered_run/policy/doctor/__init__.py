"""`doctor`'s judgement: pure functions from the facts about this machine (`model.facts`,
read by the readers in `host/`) to findings and a tier's check (`model.findings`).

Each area is a module of its own: cgroups and the backend, systemd, kernel features, CPUs,
memory safety, container engines, and the tier. Tests feed them synthetic machines.
"""

from __future__ import annotations

from tiered_run.inputs.config import Config
from tiered_run.model.facts import Facts
from tiered_run.model.findings import Diagnosis, Finding, Severity, TierCheck
from tiered_run.model.spec import Limits
from tiered_run.policy.doctor.cgroups import backend_findings, cgroup_findings
from tiered_run.policy.doctor.containers import container_findings, runtime_findings
from tiered_run.policy.doctor.cpus import cpu_findings
from tiered_run.policy.doctor.guards import guard, kernel_ceilings
from tiered_run.policy.doctor.kernel import kernel_findings
from tiered_run.policy.doctor.memory import memory_findings
from tiered_run.policy.doctor.systemd import systemd_findings
from tiered_run.policy.doctor.tier import check_tier
from tiered_run.policy.tiers import protected_tiers

__all__ = ["diagnose"]


def diagnose(
    facts: Facts,
    config: Config | None,
    tier_name: str | None = None,
    *,
    config_problem: str | None = None,
    user_problem: str | None = None,
) -> Diagnosis:
    """Every finding, and the check of `tier_name` (default: the config's default tier).
    `config` is None where the config could not be read (`config_problem` says why): a
    run could not start either. UsageError for a tier the config does not have."""
    protected = protected_tiers(config.tiers) if config is not None else {}
    tier: TierCheck | None = None
    limits: Limits | None = None
    if config is not None:
        tier, limits = check_tier(config.tier(tier_name), config, facts, user_problem)
    findings = [
        *cgroup_findings(facts),
        *backend_findings(facts),
        *systemd_findings(facts),
        *kernel_findings(facts),
        *cpu_findings(facts, protected),
        *memory_findings(facts),
        *container_findings(facts, protected, limits),
        *runtime_findings(facts),
        _config(config, config_problem),
    ]
    return Diagnosis(tuple(findings), tier, machine_summary(facts, config))


def _config(config: Config | None, problem: str | None) -> Finding:
    if config is None:
        return Finding(
            "tiers.config",
            "tiers",
            Severity.PROBLEM,
            f"the tier config cannot be read: {problem}",
            "no run can start until it can be read",
            "fix the file as the message says, or give another with --config",
        )
    protected = ", ".join(name for name, tier in config.tiers.items() if tier.protected)
    return Finding(
        "tiers.config",
        "tiers",
        Severity.OK,
        f"tiers from {config.source}: {', '.join(config.tiers)}; default "
        f"{config.default_tier!r}" + (f"; protected: {protected}" if protected else ""),
        "tiered-run tiers shows them; tiered-run init writes a config made for this machine",
    )


def machine_summary(facts: Facts, config: Config | None) -> dict[str, object]:
    """The headline facts, for the JSON's `machine` and the table's first lines."""
    hybrid = facts.cgroups.mode in ("v1", "hybrid")
    return {
        "kernel": facts.kernel.release,
        "cgroup_mode": facts.cgroups.mode,
        "pid1": facts.systemd.pid1,
        "systemd_version": facts.systemd.version if facts.systemd.running else None,
        "session_scope": facts.systemd.session,
        "root": facts.euid == 0,
        "backend": facts.auto,
        "backend_reason": facts.auto_reason,
        "guards": {
            s.key: guard(s, facts.chosen, hybrid, facts.interval)[0].value
            for s in kernel_ceilings()
        },
        "cpus_online": list(facts.cpus.online),
        "cpus_allowed": list(facts.cpus.allowed),
        "cpus_isolated": list(facts.cpus.isolated),
        "memory_total_bytes": facts.memory_total,
        "swap_total_bytes": facts.kernel.swap_total,
        "config": config.source if config is not None else None,
    }
