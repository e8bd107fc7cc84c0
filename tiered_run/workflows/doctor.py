"""`doctor` end to end: read the facts (host readers, the backends' cached probes, the tier
config), then judge them (`policy.doctor`). The only place where the two meet."""

from __future__ import annotations

import os
from pathlib import Path

from tiered_run.backends import BACKENDS, choose
from tiered_run.errors import UsageError
from tiered_run.host.cgroup_facts import read_cgroup_facts
from tiered_run.host.kernel_facts import read_cpu_facts, read_kernel_facts
from tiered_run.host.machine import read_machine
from tiered_run.host.process_facts import read_engines, read_processes
from tiered_run.host.runtimes import probe_runtimes
from tiered_run.host.systemd_facts import read_systemd_facts
from tiered_run.inputs.config import Config, load_config
from tiered_run.inputs.identity import resolve_user
from tiered_run.inputs.settings import DEFAULT_INTERVAL
from tiered_run.model.facts import BackendFacts, Facts
from tiered_run.model.findings import Diagnosis
from tiered_run.policy.doctor import diagnose


def read_facts(*, try_scope: bool = True) -> Facts:
    """Everything doctor judges, read from this machine. `try_scope`: make a transient
    systemd scope to see whether Delegate=yes works (as root, where systemd is init)."""
    cgroups = read_cgroup_facts()
    kernel = read_kernel_facts()
    machine = read_machine()
    processes = read_processes()
    choice = choose("auto")
    return Facts(
        euid=os.geteuid(),
        cgroups=cgroups,
        systemd=read_systemd_facts(cgroups.own, try_scope=try_scope),
        kernel=kernel,
        cpus=read_cpu_facts(cmdline=kernel.cmdline),
        memory_total=machine.memory_total,
        processes=processes,
        engines=read_engines(processes),
        runtimes=tuple(probe_runtimes(bool(cgroups.v1_controllers)).values()),
        backends=tuple(
            BackendFacts(name, probe.usable, probe.reason, probe.capabilities)
            for name, cls in BACKENDS.items()
            for probe in (cls.probe(),)
        ),
        auto=choice.backend.name,
        auto_reason="; ".join((choice.reason, *choice.qualifiers)),
        interval=DEFAULT_INTERVAL,
        self_pids=frozenset({os.getpid()}),
    )


def run_doctor(tier: str | None = None, config_path: Path | None = None) -> Diagnosis:
    """The diagnosis of this machine and of `tier` (default: the config's default tier).
    A config that cannot be read is a finding (a run could not start either); a tier the
    config does not have is a UsageError."""
    facts = read_facts()
    config: Config | None = None
    problem = None
    try:
        config = load_config(read_machine(), config_path)
    except UsageError as err:
        problem = err.message
    user_problem = None
    if config is not None:
        chosen = config.tier(tier)
        if chosen.user is not None:
            try:
                resolve_user(chosen.user, f"tier {chosen.name!r} (from {config.source}): user")
            except UsageError as err:
                user_problem = err.message
    return diagnose(facts, config, tier, config_problem=problem, user_problem=user_problem)
