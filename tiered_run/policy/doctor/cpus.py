"""Findings on CPUs: which are online and ours to hand out, what isolcpus=, nohz_full= and
rcu_nocbs= really do, and which processes run unpinned on the CPUs a protected tier keeps
for the host."""

from __future__ import annotations

from collections.abc import Mapping

from tiered_run.inputs.units import format_cpus, plural
from tiered_run.model.facts import Facts
from tiered_run.model.findings import Finding, Severity
from tiered_run.policy.tiers import cpu_list

AREA = "cpus"
SHOWN_PROCESSES = 8  # the first few unpinned processes on protected CPUs, by name


def cpu_findings(facts: Facts, protected: Mapping[int, str]) -> list[Finding]:
    found = [_allowed(facts), _isolated(facts, protected)]
    tick = _tick(facts)
    if tick is not None:
        found.append(tick)
    if protected:
        found.append(_unpinned(facts, protected))
    return found


def _allowed(facts: Facts) -> Finding:
    cpus = facts.cpus
    online = format_cpus(cpus.online)
    outside = sorted(set(cpus.online) - set(cpus.allowed))
    if not outside:
        return Finding(
            "cpus.online",
            AREA,
            Severity.OK,
            f"{plural(len(cpus.online), 'CPU')} online ({online}), every one of them open to "
            "tiered-run",
            "tiers can be laid out over all of them",
        )
    return Finding(
        "cpus.online",
        AREA,
        Severity.WARNING,
        f"CPUs {online} are online, but tiered-run may only use {format_cpus(cpus.allowed)} "
        "from here (its own CPU affinity)",
        f"a run cannot get CPUs {format_cpus(outside)}: the cgroup or session tiered-run "
        "was started in narrowed its CPUs, and everything started from it inherits that",
        "taskset -cp $$ shows a shell's CPUs; start tiered-run from a shell or unit allowed "
        "every CPU (e.g. sudo systemd-run --scope -p AllowedCPUs="
        f"{online} tiered-run ... on cgroup v2), or widen the slice that narrowed them",
    )


def _isolated(facts: Facts, protected: Mapping[int, str]) -> Finding:
    cpus = facts.cpus
    if not cpus.isolated:
        return Finding(
            "cpus.isolcpus",
            AREA,
            Severity.OK,
            "no CPU is isolated (no isolcpus=)",
            "the host's own processes may use every CPU; protected tiers keep runs off "
            "theirs without taking them from the host",
        )
    isolated = set(cpus.isolated)
    kept = sorted(isolated & set(protected))
    workload = sorted(isolated - set(protected))
    effects = [
        "isolcpus= does not reserve CPUs for the system: it takes them away from the "
        "scheduler for every process that is not pinned to them"
    ]
    if kept:
        effects.append(
            f"CPUs {format_cpus(kept)} of the protected tier are isolated, so the host's own "
            "processes, which are not pinned, never run on the CPUs kept for them"
        )
    if workload:
        effects.append(
            f"a run pinned to isolated CPUs {format_cpus(workload)} is not balanced across "
            "them: each of its processes stays on the CPU it started on, and a parallel "
            "test suite piles up on one"
        )
    given = f" (isolcpus={cpus.isolcpus})" if cpus.isolcpus else ""
    return Finding(
        "cpus.isolcpus",
        AREA,
        Severity.WARNING,
        f"CPUs {format_cpus(cpus.isolated)} are isolated{given}",
        "; ".join(effects),
        "remove isolcpus= from the kernel command line (GRUB_CMDLINE_LINUX in "
        "/etc/default/grub, then update-grub and reboot); keep CPUs for the host with a "
        "protected tier instead (tiered-run init writes one), which keeps runs off them "
        "and leaves them to the host",
    )


def _tick(facts: Facts) -> Finding | None:
    cpus = facts.cpus
    parts = []
    if cpus.nohz_full:
        parts.append(f"nohz_full={format_cpus(cpus.nohz_full)}")
    if cpus.rcu_nocbs:
        parts.append(f"rcu_nocbs={format_cpus(cpus.rcu_nocbs)}")
    if not parts:
        return None
    return Finding(
        "cpus.nohz-full",
        AREA,
        Severity.NOTE,
        f"kernel command line: {' '.join(parts)}",
        "the kernel stops the scheduler tick on a CPU running a single task and moves RCU "
        "callbacks off those CPUs; that helps one pinned, latency-critical task, and keeps "
        "no other process off them",
    )


def _unpinned(facts: Facts, protected: Mapping[int, str]) -> Finding:
    """Processes on a protected CPU now whose affinity reaches past the protected CPUs:
    nobody pinned them there, they wander in."""
    kept = set(protected)
    wanderers = [
        p
        for p in facts.processes
        if p.cpu in kept
        and p.pid not in facts.self_pids
        and p.allowed
        and not set(p.allowed) <= kept
    ]
    keepers = ", ".join(sorted({repr(name) for name in protected.values()}))
    where = f"{cpu_list(sorted(kept))} of protected tier {keepers}"
    if not wanderers:
        return Finding(
            "cpus.unpinned-on-protected",
            AREA,
            Severity.OK,
            f"no unpinned process runs on {where} now",
            "the protected CPUs are the host's",
        )
    names = sorted({p.comm for p in wanderers})
    shown = ", ".join(names[:SHOWN_PROCESSES]) + (", ..." if len(names) > SHOWN_PROCESSES else "")
    return Finding(
        "cpus.unpinned-on-protected",
        AREA,
        Severity.NOTE,
        f"{plural(len(wanderers), 'unpinned process', 'unpinned processes')} on {where} now: "
        f"{shown}",
        "tiered-run keeps its runs off the protected CPUs; other programs are not pinned "
        "and share them with the host (a container daemon's containers too)",
        "pin what is not the host's to the other CPUs: on cgroup v2 with systemd, "
        "systemctl set-property user.slice AllowedCPUs=LIST (and docker.service); with "
        "cgroup v1, CPUAffinity=LIST in /etc/systemd/system.conf, or taskset -c LIST",
    )
