"""doctor's judgement on synthetic machines: the user's Ubuntu 20.04 (hybrid, systemd, a
login session, Docker, isolcpus), a container without systemd, a pure cgroup v2 Debian.
Each finding is a pure function of the facts; so is the tier's check and the exit code."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import V1_CAPS, V1_GROUPS, V2_CAPS, GiB, hybrid_cgroups, make_facts, v2_cgroups

from tiered_run.errors import UsageError
from tiered_run.inputs.config import Config, parse_config
from tiered_run.model.facts import (
    ContainerEngine,
    CpuFacts,
    Facts,
    KernelFacts,
    MemoryCeiling,
    ProcessFacts,
    SystemdFacts,
    UnifiedGroup,
)
from tiered_run.model.findings import Diagnosis, Finding, Guard, Severity
from tiered_run.model.host import Machine
from tiered_run.model.usage import CONTAINING, Capability
from tiered_run.policy.doctor import diagnose
from tiered_run.policy.tiers import default_tiers

USER_TIERS = {
    "default_tier": "aimgr",
    "tiers": {
        "system": {"cpus": "0-1", "protected": True},
        "user": {"cpus": "2-3", "memory": "4G"},
        "aimgr": {"cpus": "4-19", "memory": "20G", "memory_high": "18G", "tasks_max": 4096},
    },
}
SYSTEMD_CAPS = CONTAINING | {Capability.OOM_EVENTS, Capability.FREEZE, Capability.MEMORY_PEAK}


def built_in(facts: Facts) -> Config:
    machine = Machine(facts.cpus.online, facts.memory_total)
    return Config(default_tiers(machine), "batch", "built-in defaults")


def user_config(facts: Facts, data: dict | None = None) -> Config:
    return parse_config(data or USER_TIERS, Machine(facts.cpus.online, facts.memory_total), "t")


def find(diagnosis: Diagnosis, id_: str) -> Finding:
    return next(f for f in diagnosis.findings if f.id == id_)


def ubuntu_2004(**overrides: object) -> Facts:
    """The machine of the user story: 20 vCPUs, 23 GiB, hybrid, systemd 245 as PID 1; the
    caller in a login session scope that narrowed its CPUs to 2-19; Docker running on
    every CPU with the cgroupfs driver; 2 GiB of swap the v1 controller does not count."""
    online = tuple(range(20))
    values: dict[str, object] = {
        "cpus": CpuFacts(online, tuple(range(2, 20))),
        "memory_total": 23 * GiB,
        "systemd": SystemdFacts(
            "systemd",
            True,
            245,
            "/user.slice/user-1000.slice/session-2.scope",
            True,
            "systemd-run --scope -p Delegate=yes made x.scope",
        ),
        "kernel": KernelFacts(
            "5.4.0-150-generic",
            psi=(),
            psi_problem="psi=0",
            swap_total=2 * GiB,
            overcommit_memory=0,
            panic_on_oom=0,
        ),
        "processes": (
            ProcessFacts(1, "systemd", 0, 0, online),
            ProcessFacts(800, "gnome-shell", 1000, 1, online),
            ProcessFacts(801, "pinned", 1000, 0, (0, 1)),
            ProcessFacts(802, "elsewhere", 1000, 7, online),
        ),
        "engines": (
            ContainerEngine("dockerd", 900, 0, "/system.slice/docker.service", online, None),
        ),
    }
    values.update(overrides)
    return make_facts(n_cpus=20, backend="systemd", capabilities=SYSTEMD_CAPS, **values)


# -- the user's machine ---------------------------------------------------------------------


def test_the_user_s_machine_says_what_logind_and_docker_did():
    facts = ubuntu_2004()
    diagnosis = diagnose(facts, user_config(facts))

    session = find(diagnosis, "systemd.session-scope")
    assert session.severity is Severity.NOTE  # root: the systemd backend takes runs out of it
    assert "user-1000.slice/session-2.scope" in session.summary
    assert "CPUs 2-19 of online 0-19" in session.consequence
    assert "tiered-<tier>.slice" in session.consequence

    online = find(diagnosis, "cpus.online")
    assert online.severity is Severity.WARNING and "0-1" in online.consequence

    docker = find(diagnosis, "containers.dockerd")
    assert docker.severity is Severity.WARNING
    assert "protected CPUs 0-1 included" in docker.summary
    assert "/docker/<id>, outside the run" in docker.consequence
    assert "rootless Docker cannot limit containers on cgroup v1" in docker.consequence
    assert "--cpuset-cpus 4-19 --memory 20480m --pids-limit 4096" in docker.remedy
    assert "never --oom-kill-disable" in docker.remedy

    swap = find(diagnosis, "kernel.swap")
    assert swap.severity is Severity.WARNING and "swapaccount=1" in swap.remedy
    assert find(diagnosis, "kernel.psi").severity is Severity.WARNING
    assert find(diagnosis, "systemd.delegate").severity is Severity.OK

    unpinned = find(diagnosis, "cpus.unpinned-on-protected")
    assert "2 unpinned processes on CPUs 0-1 of protected tier 'system'" in unpinned.summary
    assert "gnome-shell, systemd" in unpinned.summary  # not `pinned`, not `elsewhere`


def test_the_user_s_tier_on_their_machine_is_not_all_held():
    """The user's aimgr tier sets memory_high: systemd cannot apply MemoryHigh= on a hybrid
    machine, so it is only watched, and doctor exits 1; CPUs 4-19 are within 2-19."""
    facts = ubuntu_2004()
    diagnosis = diagnose(facts, user_config(facts))
    tier = diagnosis.tier
    assert tier is not None and tier.name == "aimgr" and tier.default and not tier.blockers
    guards = {c.name: c.guard for c in tier.ceilings}
    assert guards == {
        "cpus": Guard.KERNEL,
        "memory": Guard.KERNEL,
        "memory_high": Guard.MONITOR,
        "tasks_max": Guard.KERNEL,
    }
    assert {c.name: c.how for c in tier.ceilings}["memory"] == "MemoryMax= on the run's scope"
    assert diagnosis.exit_code == 1


def test_without_root_the_session_scope_keeps_the_runs():
    facts = ubuntu_2004(
        euid=1000,
        backends=(),
        auto="cgroup1",
        auto_reason="cgroup v1 controllers",
        systemd=SystemdFacts(
            "systemd",
            True,
            245,
            "/user.slice/user-1000.slice/session-2.scope",
            None,
            "not tried: transient system scopes need root",
        ),
    )
    diagnosis = diagnose(facts, user_config(facts))
    session = find(diagnosis, "systemd.session-scope")
    assert session.severity is Severity.WARNING
    assert "sudo tiered-run" in session.remedy
    assert find(diagnosis, "systemd.delegate").severity is Severity.NOTE


def test_tier_cpus_the_session_took_away_stop_a_run():
    facts = ubuntu_2004()
    data = {"tiers": {"batch": {"cpus": "0-19"}}}
    tier = diagnose(facts, user_config(facts, data), "batch").tier
    assert tier is not None and not tier.guarded
    assert tier.blockers == (
        "CPUs 0-1 are online, but tiered-run may only use 2-19 from here (see cpus.online)",
    )


# -- what isolcpus really does --------------------------------------------------------------


def test_isolcpus_on_the_protected_cpus_takes_them_from_the_host():
    online = tuple(range(20))
    facts = make_facts(cpus=CpuFacts(online, online, (0, 1), isolcpus="0-1"), memory_total=23 * GiB)
    found = find(diagnose(facts, user_config(facts)), "cpus.isolcpus")
    assert found.severity is Severity.WARNING
    assert "does not reserve CPUs for the system" in found.consequence
    assert "never run on the CPUs kept for them" in found.consequence
    assert "isolcpus=0-1" in found.summary and "protected tier" in found.remedy


def test_isolcpus_on_the_workload_cpus_leaves_a_run_unbalanced():
    online = tuple(range(20))
    facts = make_facts(cpus=CpuFacts(online, online, online[4:]), memory_total=23 * GiB)
    diagnosis = diagnose(facts, user_config(facts))
    assert "is not balanced across them" in find(diagnosis, "cpus.isolcpus").consequence
    assert diagnosis.tier is not None
    assert any("isolated" in note for note in diagnosis.tier.notes)


def test_nohz_full_and_rcu_nocbs_are_explained_only_when_set():
    facts = make_facts()
    assert all(f.id != "cpus.nohz-full" for f in diagnose(facts, built_in(facts)).findings)
    facts = replace(facts, cpus=replace(facts.cpus, nohz_full=(2, 3), rcu_nocbs=(2, 3)))
    found = find(diagnose(facts, built_in(facts)), "cpus.nohz-full")
    assert found.summary == "kernel command line: nohz_full=2-3 rcu_nocbs=2-3"
    assert "keeps no other process off them" in found.consequence


# -- memory safety --------------------------------------------------------------------------


def test_an_oom_killer_disabled_above_makes_tasks_hang_and_the_ceiling_untrustworthy():
    ceilings = (MemoryCeiling("/docker/ab", None), MemoryCeiling("/docker", 8 * GiB, True))
    facts = make_facts(cgroups=replace(make_facts().cgroups, ceilings=ceilings))
    diagnosis = diagnose(facts, built_in(facts))
    disabled = find(diagnosis, "memory.oom-kill-disabled")
    assert disabled.severity is Severity.PROBLEM and "hang" in disabled.consequence
    enclosing = find(diagnosis, "memory.enclosing-ceiling")
    assert "/docker" in enclosing.summary and "8.0 GiB" in enclosing.summary
    memory = next(c for c in diagnosis.tier.ceilings if c.name == "memory")  # type: ignore[union-attr]
    assert "OOM killer disabled" in memory.trouble and not memory.guarded
    assert diagnosis.exit_code == 1


@pytest.mark.parametrize(
    ("panic", "severity", "guarded"),
    [(0, Severity.OK, True), (1, Severity.WARNING, True), (2, Severity.PROBLEM, False)],
)
def test_panic_on_oom(panic, severity, guarded):
    facts = make_facts()
    facts = replace(facts, kernel=replace(facts.kernel, panic_on_oom=panic))
    diagnosis = diagnose(facts, built_in(facts))
    assert find(diagnosis, "memory.panic-on-oom").severity is severity
    assert diagnosis.tier is not None and diagnosis.tier.guarded is guarded


def test_strict_overcommit_and_oom_daemons():
    facts = make_facts(processes=(ProcessFacts(300, "earlyoom", 0, 0, (0, 1, 2, 3)),))
    facts = replace(facts, kernel=replace(facts.kernel, overcommit_memory=2, overcommit_ratio=50))
    diagnosis = diagnose(facts, built_in(facts))
    overcommit = find(diagnosis, "memory.overcommit")
    assert overcommit.severity is Severity.WARNING and "ENOMEM" in overcommit.consequence
    daemons = find(diagnosis, "memory.oom-daemons")
    assert "earlyoom" in daemons.summary and "signal, not a memory outcome" in daemons.consequence


# -- other machines -------------------------------------------------------------------------


def test_a_container_without_cgroups_falls_back_to_the_monitor():
    facts = make_facts(
        euid=1000,
        cgroups=replace(make_facts().cgroups, mounts=(), v1=(), unified=None, ceilings=()),
        backend="plain",
        capabilities=frozenset(),
    )
    diagnosis = diagnose(facts, built_in(facts))
    assert find(diagnosis, "cgroups.mode").severity is Severity.PROBLEM
    auto = find(diagnosis, "backend.auto")
    assert auto.severity is Severity.WARNING and "sudo" in auto.remedy
    assert find(diagnosis, "kernel.freeze").severity is Severity.NOTE
    guards = {c.name: c.guard for c in diagnosis.tier.ceilings}  # type: ignore[union-attr]
    assert guards == {"cpus": Guard.AFFINITY, "memory": Guard.MONITOR, "tasks_max": Guard.MONITOR}
    assert diagnosis.exit_code == 1


def test_pure_v2_with_systemd_as_root_holds_everything():
    facts = make_facts(
        cgroups=v2_cgroups(),
        backend="systemd",
        capabilities=V2_CAPS,
        systemd=SystemdFacts("systemd", True, 252, "/system.slice/build.scope", True, "made"),
        kernel=KernelFacts(
            "6.1.0",
            psi=("cpu", "memory", "io"),
            swap_total=GiB,
            overcommit_memory=0,
            panic_on_oom=0,
        ),
    )
    data = {"tiers": {"batch": {"memory": "8G", "memory_high": "7G", "cpu_weight": 50}}}
    diagnosis = diagnose(facts, user_config(facts, data))
    assert find(diagnosis, "kernel.swap").severity is Severity.OK
    assert find(diagnosis, "backend.ceilings").severity is Severity.OK
    assert find(diagnosis, "systemd.session-scope").severity is Severity.OK
    assert diagnosis.tier is not None and diagnosis.tier.guarded
    hows = {c.name: c.how for c in diagnosis.tier.ceilings}
    assert hows["cpu_weight"] == "CPUWeight= on the run's scope"
    assert hows["memory_high"] == "MemoryHigh= on the run's scope"
    assert diagnosis.exit_code == 0


def test_v1_access_says_which_shares_the_runs_get():
    full = find(diagnose(make_facts(), built_in(make_facts())), "cgroups.v1-access")
    assert "and cpu and blkio for the weights, quota and I/O throttles" in full.consequence
    groups = tuple(g for g in V1_GROUPS if g.hierarchy != "blkio")
    facts = make_facts(cgroups=hybrid_cgroups(v1=groups))
    found = find(diagnose(facts, built_in(facts)), "cgroups.v1-access")
    assert found.severity is Severity.OK
    assert "without a blkio group of tiered-run's own" in found.consequence


def test_weights_without_their_controller_are_not_applied():
    facts = make_facts()  # cgroup v1, no disk scheduled by bfq
    data = {"tiers": {"batch": {"memory": "8G", "io_weight": 50, "cpu_weight": 200}}}
    diagnosis = diagnose(facts, user_config(facts, data))
    checks = {c.name: c for c in diagnosis.tier.ceilings}  # type: ignore[union-attr]
    io = checks["io_weight"]
    assert io.guard is Guard.NOT_APPLIED and "bfq" in io.how
    assert checks["cpu_weight"].guard is Guard.KERNEL
    assert checks["cpu_weight"].how == "cgroup v1 cpu.shares"
    assert "io_weight" in find(diagnosis, "backend.ceilings").consequence
    assert find(diagnosis, "backend.ceilings").severity is Severity.NOTE
    assert diagnosis.exit_code == 1


@pytest.mark.parametrize(
    ("group", "needle"),
    [
        (
            UnifiedGroup("unified", "/a", "/sys/fs/cgroup/a", True, controllers=("cpu", "io")),
            "cannot hand down cpuset, memory, pids",
        ),
        (
            UnifiedGroup(
                "unified",
                "/a",
                "/sys/fs/cgroup/a",
                True,
                controllers=("cpuset", "memory", "pids"),
                others=(7, 8),
            ),
            "also holds 2 other processes",
        ),
        (UnifiedGroup("unified", "/a", "/sys/fs/cgroup/a", False), "cannot write"),
    ],
)
def test_v2_groups_that_cannot_delegate_say_why(group, needle):
    facts = make_facts(cgroups=v2_cgroups(unified=group), backend="plain", capabilities=frozenset())
    found = find(diagnose(facts, built_in(facts)), "cgroups.unified")
    assert found.severity is Severity.WARNING and needle in found.summary
    assert "Delegate=yes" in found.remedy


def test_a_delegated_scope_that_fails_is_a_problem():
    systemd = SystemdFacts("systemd", True, 252, "/init.scope", False, "Unknown assignment")
    facts = make_facts(systemd=systemd, backend="systemd", capabilities=V2_CAPS)
    found = find(diagnose(facts, built_in(facts)), "systemd.delegate")
    assert found.severity is Severity.PROBLEM and "Unknown assignment" in found.summary


def test_podman_keeps_a_container_inside_only_when_split():
    facts = make_facts(engines=(ContainerEngine("podman", cgroup_driver=None),))
    found = find(diagnose(facts, built_in(facts)), "containers.podman")
    assert found.severity is Severity.NOTE and "--cgroups=split" in found.consequence
    assert "cgroup manager cgroupfs (default)" in found.summary


# -- the tier and the exit code -------------------------------------------------------------


def test_the_default_tier_held_by_the_kernel_exits_0():
    facts = make_facts(capabilities=V1_CAPS)
    diagnosis = diagnose(facts, built_in(facts))
    assert diagnosis.tier is not None and diagnosis.tier.name == "batch"
    assert diagnosis.exit_code == 0
    assert diagnosis.machine["guards"] == {
        "cpus": "kernel",
        "memory": "kernel",
        "memory_high": "monitor",
        "tasks_max": "kernel",
        "cpu_weight": "kernel",
        "cpu_quota": "kernel",
        "io_weight": "not-applied",
        "io_read_max": "kernel",
        "io_write_max": "kernel",
        "io_read_iops_max": "kernel",
        "io_write_iops_max": "kernel",
        "memory_low": "not-applied",
    }


def test_a_protected_tier_cannot_run_and_an_unknown_one_is_refused():
    facts = make_facts()
    tier = diagnose(facts, built_in(facts), "system").tier
    assert tier is not None and "is protected" in tier.blockers[0]
    with pytest.raises(UsageError, match="unknown tier 'nosuch'"):
        diagnose(facts, built_in(facts), "nosuch")


def test_a_config_that_cannot_be_read_is_a_problem_and_exit_1():
    facts = make_facts()
    diagnosis = diagnose(facts, None, config_problem="config file x: is writable by others")
    assert diagnosis.tier is None and diagnosis.exit_code == 1
    assert find(diagnosis, "tiers.config").severity is Severity.PROBLEM


def test_a_tier_user_that_cannot_be_resolved_stops_a_run():
    facts = make_facts()
    diagnosis = diagnose(facts, built_in(facts), user_problem="--user ghost: no such account")
    assert diagnosis.tier is not None and diagnosis.tier.blockers == (
        "--user ghost: no such account",
    )
