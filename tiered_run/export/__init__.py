"""A tier in the terms of the schedulers people use beyond one machine: a systemd unit
(and the slices that make the tiers persistent), `docker run` flags, a compose service, a
Kubernetes Job and a Slurm batch script. One module per target; what they share (the
settings a run carries, and the notes for what a target cannot say) is in `sheet`.
"""

from __future__ import annotations

from collections.abc import Callable

from tiered_run.export.sheet import Exported

FORMATS = ("systemd", "docker", "compose", "k8s", "slurm")


def renderer(name: str) -> Callable[[Exported], str]:
    """The function that prints a tier for target `name` (one of FORMATS)."""
    if name == "systemd":
        from tiered_run.export.systemd import service_unit as render
    elif name in ("docker", "compose"):
        from tiered_run.export import container

        render = container.docker_run if name == "docker" else container.compose_service
    elif name == "k8s":
        from tiered_run.export.k8s import job_manifest as render
    elif name == "slurm":
        from tiered_run.export.slurm import batch_script as render
    else:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return render
