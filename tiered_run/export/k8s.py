"""Kubernetes: a Job that runs the command once, with the tier's ceilings as the
container's requests and limits.

Kubernetes counts CPUs, not which ones; it ends a pod with SIGTERM only; a pod's process
limit and weights belong to the kubelet, not to the manifest.
"""

from __future__ import annotations

import re
import signal

from tiered_run.export.sheet import Exported, Sheet, whole_seconds
from tiered_run.export.yaml import dump
from tiered_run.inputs.units import format_cpus

_SUFFIXES = (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, unit in _SUFFIXES:
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def job_name(tier: str | None, command: tuple[str, ...]) -> str:
    """A DNS-1123 name: lowercase letters, digits and dashes, at most 63 characters."""
    program = command[0].rsplit("/", 1)[-1] if command else "workload"
    name = re.sub(r"[^a-z0-9-]+", "-", f"{tier or 'tier'}-{program}".lower()).strip("-")
    return name[:63].rstrip("-") or "tiered-run"


def job_manifest(exported: Exported) -> str:
    sheet = Sheet(exported, "k8s")
    spec = exported.spec
    cpus = sheet.take("cpus")
    sheet.note(
        "cpus",
        f"requests {len(cpus)} CPU(s), not CPUs {format_cpus(cpus)}: which ones is the node's "
        "choice (exclusive CPUs need the kubelet's static CPU manager policy)",
    )
    requests: dict[str, object] = {"cpu": str(len(cpus))}
    limits: dict[str, object] = {"cpu": str(len(cpus))}
    if (quota := sheet.take("cpu_quota")) is not None:
        # A CPU limit is a CFS quota (the kubelet writes cpu.max): the tighter one wins.
        limits["cpu"] = f"{round(min(quota, len(cpus) * 100) * 10)}m"
        requests["cpu"] = limits["cpu"]
    memory, high = sheet.take("memory"), sheet.take("memory_high")
    if memory is not None:
        limits["memory"] = quantity(memory)
    if high is not None:
        requests["memory"] = quantity(high)
        sheet.note("memory_high", "the memory request: what the scheduler reserves, no throttle")
    elif memory is not None:
        requests["memory"] = quantity(memory)
    container: dict[str, object] = {
        "name": "workload",
        "image": exported.image,
        "command": list(spec.command),
        "resources": {"requests": requests, "limits": limits},
    }
    if (cwd := sheet.take("cwd")) is not None:
        container["workingDir"] = str(cwd)
    if env := sheet.take("env"):
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    pod: dict[str, object] = {"restartPolicy": "Never"}
    stop = sheet.take("stop_signal")
    if stop != signal.SIGTERM:
        sheet.note("stop_signal", "a pod is always ended with SIGTERM")
    pod["terminationGracePeriodSeconds"] = whole_seconds(sheet.take("kill_after"))
    if sheet.take("user") and spec.user is not None:
        pod["securityContext"] = {"runAsUser": spec.user.uid, "runAsGroup": spec.user.gid}
    pod["containers"] = [container]
    job_spec: dict[str, object] = {"backoffLimit": 0}
    timeout = sheet.take("timeout")
    if timeout is not None:
        job_spec["activeDeadlineSeconds"] = whole_seconds(timeout)
    job_spec["template"] = {"spec": pod}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.tier, spec.command)},
        "spec": job_spec,
    }
    return sheet.header() + dump(job)
