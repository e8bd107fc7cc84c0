"""Findings on the cgroups: the mode, whether tiered-run can use them from where it runs
(ownership, delegation, the no-internal-process rule), which backend `auto` picks and what
holds each ceiling with it."""

from __future__ import annotations

from tiered_run.backends.cgroup1 import CONTROLLERS as V1_NEEDED
from tiered_run.backends.delegation import WANTED
from tiered_run.model.facts import Facts
from tiered_run.model.findings import Finding, Guard, Severity
from tiered_run.model.usage import CONTAINING
from tiered_run.policy.doctor.guards import guard, kernel_ceilings

AREA = "cgroups"
V2_NEEDED = WANTED[:3]  # cpuset, memory, pids; cpu only adds detail
_MODES = {
    "v2": "cgroup v2 (unified): one hierarchy with every controller",
    "hybrid": "cgroup v1 hybrid: v1 controllers, and a controller-less cgroup2 mount",
    "v1": "cgroup v1 (legacy): one hierarchy per controller, no cgroup2 mount",
    "none": "no cgroup filesystem is mounted",
}
_MODE_MEANS = {
    "v2": "runs get cpuset, memory.max/high, pids.max, cgroup.kill and freeze from one group",
    "hybrid": (
        "runs get a group in each v1 hierarchy for their ceilings; the cgroup2 mount adds "
        "cgroup.kill, freeze and an exact list of the tree"
    ),
    "v1": "runs get a group in each v1 hierarchy; SIGKILL is freeze, kill, thaw, repeat",
    "none": "the kernel holds no ceiling for a tree: tiered-run falls back to `plain`",
}


def cgroup_findings(facts: Facts) -> list[Finding]:
    cgroups = facts.cgroups
    mode = cgroups.mode
    unified = next((m.path for m in cgroups.mounts if m.version == 2), None)
    controllers = sorted(cgroups.v1_controllers) if mode in ("v1", "hybrid") else []
    if mode == "v2" and cgroups.unified is not None:
        controllers = list(cgroups.unified.controllers)
    where = f" at {unified}" if unified else ""
    summary = f"{_MODES[mode]}{where}" + (
        f"; controllers: {', '.join(controllers)}" if controllers else ""
    )
    found = [
        Finding(
            "cgroups.mode",
            AREA,
            Severity.PROBLEM if mode == "none" else Severity.OK,
            summary,
            _MODE_MEANS[mode],
            "mount the unified hierarchy: mount -t cgroup2 none /sys/fs/cgroup"
            if mode == "none"
            else "",
        )
    ]
    if mode in ("v1", "hybrid"):
        found.append(_v1_access(facts))
    if cgroups.unified is not None:
        found.append(_unified(facts))
    return found


def _v1_access(facts: Facts) -> Finding:
    groups = {c: g for g in facts.cgroups.v1 for c in g.hierarchy.split(",")}
    missing = [c for c in V1_NEEDED if c not in groups]
    if missing:
        return Finding(
            "cgroups.v1-access",
            AREA,
            Severity.WARNING,
            f"cgroup v1 controllers not mounted: {', '.join(missing)}",
            "the cgroup1 backend needs cpuset, memory, pids, freezer and cpuacct; without "
            "them memory and tasks fall to the monitor",
            "mount them, e.g. mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids",
        )
    locked = [c for c in V1_NEEDED if not groups[c].writable]
    own = ", ".join(f"{c} {groups[c].path}" for c in V1_NEEDED)
    if locked:
        return Finding(
            "cgroups.v1-access",
            AREA,
            Severity.WARNING,
            f"tiered-run cannot write its own v1 groups in {', '.join(locked)} ({own})",
            "no run group can be made there: the kernel holds none of the run's ceilings",
            "run tiered-run as root (sudo tiered-run ...), or from groups your user owns in "
            f"each of {', '.join(V1_NEEDED)} (cgcreate -a $USER -t $USER ...)",
        )
    shares = [c for c in ("cpu", "blkio") if c in groups and groups[c].writable]
    lacking = [c for c in ("cpu", "blkio") if c not in shares]
    consequence = "each run gets its own cpuset, memory, pids, freezer and cpuacct group"
    if shares:
        consequence += f", and {' and '.join(shares)} for the weights, quota and I/O throttles"
    if lacking:
        consequence += (
            f"; without a {' or '.join(lacking)} group of tiered-run's own, what those hold "
            "is not applied (the report lists it)"
        )
    return Finding(
        "cgroups.v1-access",
        AREA,
        Severity.OK,
        f"tiered-run can make run groups below its own v1 groups ({own})",
        consequence,
    )


def _unified(facts: Facts) -> Finding:
    group = facts.cgroups.unified
    assert group is not None
    hybrid = facts.cgroups.mode in ("v1", "hybrid")
    at = group.directory or group.path
    if group.directory is None:
        return Finding(
            "cgroups.unified",
            AREA,
            Severity.WARNING,
            f"our cgroup2 group {group.path} is not visible in the mount",
            "no run group can be made in the unified hierarchy from here",
            "run tiered-run where its cgroup is mounted (not in a foreign cgroup namespace)",
        )
    if not group.writable:
        return Finding(
            "cgroups.unified",
            AREA,
            Severity.NOTE if hybrid else Severity.WARNING,
            f"tiered-run cannot write its cgroup2 group {at}",
            "hybrid: SIGKILL falls back to freeze-kill-thaw through the v1 freezer"
            if hybrid
            else "no run group can be made: the kernel holds none of the run's ceilings",
            "run as root, or as a user in a delegated scope of its own: "
            "systemd-run --user --scope -p Delegate=yes tiered-run ...",
        )
    if hybrid:
        return Finding(
            "cgroups.unified",
            AREA,
            Severity.OK,
            f"the controller-less cgroup2 group {at} is writable",
            "runs join it too: cgroup.kill and freeze act on the whole tree at once",
        )
    missing = [c for c in V2_NEEDED if c not in group.controllers]
    undelegated = [c for c in V2_NEEDED if c in group.controllers and c not in group.subtree]
    if missing:
        return Finding(
            "cgroups.unified",
            AREA,
            Severity.WARNING,
            f"our cgroup {at} cannot hand down {', '.join(missing)}: its parent did not "
            "delegate them",
            "those ceilings fall to the monitor (sampled, not held by the kernel)",
            "start tiered-run in a delegated scope: systemd-run --scope -p Delegate=yes "
            "tiered-run ... (add --user as a user), or enable them above it: "
            f"echo '+{' +'.join(missing)}' > PARENT/cgroup.subtree_control",
        )
    if group.others and undelegated:
        pids = ", ".join(map(str, group.others[:5]))
        return Finding(
            "cgroups.unified",
            AREA,
            Severity.WARNING,
            f"our cgroup {at} also holds {len(group.others)} other processes ({pids})",
            "the kernel hands controllers down only from a group no process sits in (the "
            "no-internal-process rule); tiered-run can move itself into a leaf only when it "
            f"is alone, so {', '.join(undelegated)} cannot be delegated to runs",
            "start tiered-run in a cgroup of its own: systemd-run --scope -p Delegate=yes "
            "tiered-run ... (add --user as a user)",
        )
    return Finding(
        "cgroups.unified",
        AREA,
        Severity.OK,
        f"our cgroup {at} is writable and can hand down {', '.join(V2_NEEDED)}",
        "runs get cpuset, memory and pids groups of their own below it",
    )


def backend_findings(facts: Facts) -> list[Finding]:
    """Which backend `auto` picks and why, what the others lack, and what holds each
    ceiling with the chosen one."""
    chosen = facts.chosen
    others = "; ".join(
        f"{b.name}: {b.reason}" if b.usable else f"{b.name}: not usable: {b.reason}"
        for b in facts.backends
        if b.name != chosen.name
    )
    containing = chosen.capabilities >= CONTAINING
    remedy = "" if containing else _backend_remedy(facts)
    found = [
        Finding(
            "backend.auto",
            "backend",
            Severity.OK if containing else Severity.WARNING,
            f"--backend auto picks {chosen.name}: {facts.auto_reason or chosen.reason}",
            (
                "the kernel holds the CPUs, memory and tasks of the whole tree"
                if containing
                else "the kernel does not hold every hard ceiling of the tree"
            )
            + (f" (others: {others})" if others else ""),
            remedy,
        )
    ]
    hybrid = facts.cgroups.mode in ("v1", "hybrid")
    held: dict[Guard, list[str]] = {}
    for setting in kernel_ceilings():
        held_by, _ = guard(setting, chosen, hybrid, facts.interval)
        held.setdefault(held_by, []).append(setting.key)
    parts = [f"{g.value}: {', '.join(keys)}" for g, keys in held.items()]
    weak = [k for g, keys in held.items() if not g.guarded for k in keys]
    severity = Severity.OK
    if weak:
        # Only the soft ceiling and the weights, which no tier needs: worth knowing.
        severity = Severity.NOTE if containing else Severity.WARNING
    found.append(
        Finding(
            "backend.ceilings",
            "backend",
            severity,
            f"with {chosen.name}: " + "; ".join(parts),
            "every ceiling a tier can set is held here"
            if not weak
            else f"{', '.join(weak)}: tiered-run watches or skips them instead of the kernel "
            "holding them",
            "" if not weak else _weak_remedy(weak, facts),
        )
    )
    return found


def _backend_remedy(facts: Facts) -> str:
    if facts.euid != 0:
        return (
            "run tiered-run as root (sudo tiered-run ...) to make cgroups, or in a "
            "delegated scope: systemd-run --user --scope -p Delegate=yes tiered-run ..."
        )
    return (
        "mount the cgroup controllers (see cgroups.mode) and run from a cgroup of tiered-run's own"
    )


def _weak_remedy(weak: list[str], facts: Facts) -> str:
    hints = []
    shares = [k for k in weak if k.startswith(("cpu_", "io_")) or k == "memory_low"]
    if shares:
        hints.append(
            f"{', '.join(shares)} need the kernel's controller for the run (cpu, io or blkio; "
            "memory.low on cgroup v2): mount or delegate it, or leave them out of tiers here"
        )
    if "memory_high" in weak:
        hints.append(
            "memory_high throttles only on cgroup v2 (memory.high): here it is a warning; "
            "leave it out, or rely on memory"
        )
    if {"cpus", "memory", "tasks_max"} & set(weak):
        hints.append(_backend_remedy(facts))
    return "; ".join(hints)
