"""Findings on container engines: where dockerd, containerd and podman run, on which CPUs,
with which cgroup driver, and whether a container a workload starts would land inside its
run (for a daemon: never, the daemon makes it)."""

from __future__ import annotations

from collections.abc import Mapping

from tiered_run.inputs.units import format_cpus
from tiered_run.model.facts import ContainerEngine, Facts
from tiered_run.model.findings import Finding, Severity
from tiered_run.model.spec import Limits, Runtime

AREA = "containers"
_CLIENT = {"dockerd": "docker", "containerd": "nerdctl", "podman": "podman"}
MiB = 1024**2
# The hierarchies whose run group holds a container (and cgroup2's, which kills it): a
# Docker daemon's one --cgroup-parent must name the run's group in each.
_HELD = frozenset({"cpuset", "memory", "pids", "freezer", "cpuacct", ""})


def container_findings(
    facts: Facts, protected: Mapping[int, str], limits: Limits | None
) -> list[Finding]:
    """`limits`: the default tier's, to write the docker run options that match it."""
    if not facts.engines:
        return [
            Finding(
                "containers.none",
                AREA,
                Severity.OK,
                "no container engine (dockerd, containerd, podman) is installed or running",
                "nothing here starts a workload's processes outside its run on its behalf",
            )
        ]
    return [_engine(facts, engine, protected, limits) for engine in facts.engines]


def effective_driver(facts: Facts, engine: ContainerEngine) -> tuple[str, str]:
    """The cgroup driver the engine uses, and where that comes from: its configuration, or
    its default on a machine like this one."""
    if engine.cgroup_driver:
        return engine.cgroup_driver, engine.driver_source
    if engine.name == "containerd":
        return "cgroupfs", "default: SystemdCgroup is not set"
    if engine.name == "podman":
        return ("systemd" if facts.systemd.running else "cgroupfs"), "default"
    systemd_v2 = facts.systemd.running and facts.cgroups.mode == "v2"
    return ("systemd" if systemd_v2 else "cgroupfs"), "Docker 20.10+'s default here"


def _driver(facts: Facts, engine: ContainerEngine) -> str:
    driver, source = effective_driver(facts, engine)
    what = "cgroup manager" if engine.name == "podman" else "cgroup driver"
    return f"{what} {driver} ({source})"


def _landing(facts: Facts, engine: ContainerEngine) -> str:
    systemd = effective_driver(facts, engine)[0] == "systemd"
    if engine.name == "dockerd":
        if engine.uid not in (None, 0):
            return f"user@{engine.uid}.service, below the rootless daemon"
        return "system.slice/docker-<id>.scope" if systemd else "/docker/<id>"
    if engine.name == "containerd":
        return "system.slice/<namespace>-<id>.scope" if systemd else "/<namespace>/<id>"
    if systemd:
        return "a libpod-<id>.scope of machine.slice (or of the user's slice)"
    return "/libpod_parent/libpod-<id>"


def _engine(
    facts: Facts, engine: ContainerEngine, protected: Mapping[int, str], limits: Limits | None
) -> Finding:
    running = engine.pid is not None
    who = "root" if engine.uid == 0 else f"uid {engine.uid}"
    if running:
        where = f"pid {engine.pid}, {who}, in {engine.cgroup or 'an unknown cgroup'}"
        cpus = set(engine.allowed)
        on = f", on CPUs {format_cpus(engine.allowed)}" if engine.allowed else ""
        taken = sorted(cpus & set(protected))
        if taken:
            on += f" (protected CPUs {format_cpus(taken)} included)"
        summary = f"{engine.name} runs ({where}{on}); {_driver(facts, engine)}"
    else:
        summary = f"{engine.name} is installed, not running; {_driver(facts, engine)}"
    landing = _landing(facts, engine)
    if engine.name == "podman":
        consequence = (
            f"podman run from a workload places the container itself, in {landing}: outside "
            "the run, so its ceilings, its kill and its CPUs do not reach it; "
            "podman run --cgroups=split (cgroup v2) keeps conmon and the container below "
            "the caller's cgroup, inside the run; tiered-run --container IMAGE makes the "
            "container inside the run itself"
        )
    else:
        consequence = (
            f"a container a workload asks for (docker run, nerdctl run) is made by "
            f"{engine.name}, not by the workload: it lands in {landing}, outside the run, so "
            "the run's ceilings, its kill and its CPUs do not reach it, and without "
            "--cpuset-cpus it may run on every CPU, protected ones included"
        )
        if engine.name == "dockerd" and facts.cgroups.mode != "v2":
            consequence += (
                "; rootless Docker cannot limit containers on cgroup v1 (it needs cgroup v2 "
                "with systemd delegation)"
            )
    return Finding(
        f"containers.{engine.name}",
        AREA,
        Severity.WARNING if running else Severity.NOTE,
        summary,
        consequence,
        _remedy(engine, limits),
    )


def _remedy(engine: ContainerEngine, limits: Limits | None) -> str:
    options = "--cpuset-cpus LIST --memory SIZE --pids-limit N"
    if limits is not None:
        options = f"--cpuset-cpus {format_cpus(limits.cpus)}"
        if limits.memory:
            options += f" --memory {limits.memory // MiB}m"
        if limits.tasks_max:
            options += f" --pids-limit {limits.tasks_max}"
    advice = (
        f"give each container the tier's ceilings yourself: {_CLIENT[engine.name]} run "
        f"{options} ...; never --oom-kill-disable (tasks hang at the limit instead of failing)"
    )
    if engine.name == "podman":
        return f"podman run --cgroups=split ... inside a run, or {advice.split(': ', 1)[1]}"
    if engine.name == "dockerd":
        advice += (
            "; keep the daemon off protected CPUs: systemctl set-property docker.service "
            "AllowedCPUs=LIST (cgroup v2), or a drop-in with CPUAffinity=LIST"
        )
    return advice


def runtime_findings(facts: Facts) -> list[Finding]:
    """Which runtimes `--container` can use here, and where their containers would land."""
    if not facts.runtimes:
        return []
    plain = facts.auto == "plain"
    findings = []
    for probe in facts.runtimes:
        name = probe.runtime.value
        if not probe.usable:
            findings.append(
                Finding(
                    f"containers.runtime.{name}",
                    AREA,
                    Severity.NOTE,
                    f"--runtime {name}: not usable: {probe.reason}",
                    f"tiered-run --container refuses --runtime {name} (exit 125)",
                )
            )
            continue
        if plain:
            landing = (
                "but the backend here is plain: without the run's cgroups a container cannot "
                "be held, so --container is refused"
            )
        elif probe.runtime is Runtime.PODMAN:
            landing = (
                "its container lands inside the run: podman, conmon (--cgroups=no-conmon) and "
                "the container's group (<run>/.../libpod-<id>, made by runc from a relative "
                "--cgroup-parent) are all in the run's cgroups, under its ceilings and its kill"
            )
        else:
            same = {path for key, path in facts.cgroups.own.items() if key in _HELD}
            landing = (
                "its container lands inside the run: --cgroup-parent names the run's group"
                if len(same) == 1 or facts.auto == "systemd"
                else "but tiered-run's own cgroup differs between hierarchies "
                f"({', '.join(sorted(same))}): no --cgroup-parent names the run's, so "
                "--runtime docker is refused here"
            )
        findings.append(
            Finding(
                f"containers.runtime.{name}",
                AREA,
                Severity.OK if not plain else Severity.NOTE,
                f"--runtime {name}: {probe.reason}",
                landing,
            )
        )
    return findings
