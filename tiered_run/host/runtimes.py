"""Which container runtimes this machine has, and whether a container made by each would
land inside a run's cgroups.

podman is daemonless: the container is made by podman's own child (conmon, then the OCI
runtime), so with the cgroupfs manager and a relative `--cgroup-parent` it lands below the
caller's cgroup, which is the run's. Docker's daemon makes every container itself: only
with the cgroupfs driver does `--cgroup-parent` put it below a path of the caller's
choosing; with the systemd driver it becomes a scope of the daemon's slice, out of reach.
"""

from __future__ import annotations

import shutil
import subprocess

from tiered_run.model.facts import RuntimeProbe
from tiered_run.model.spec import Runtime

ASK_TIMEOUT_S = 10.0


def _ask(argv: list[str]) -> tuple[int, str]:
    """A short question to a runtime's client; (exit code, stdout or stderr's last line)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=ASK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return 127, str(err)
    text = done.stdout.strip() if done.returncode == 0 else done.stderr.strip()
    return done.returncode, text.splitlines()[-1] if text else ""


def probe_podman(cgroup_v1: bool) -> RuntimeProbe:
    """podman with the cgroupfs manager; on cgroup v1 (hybrid included) with runc, since
    crun refuses hybrid hierarchies ("cgroups in hybrid mode not supported")."""
    binary = shutil.which("podman")
    if binary is None:
        return RuntimeProbe(
            Runtime.PODMAN, False, "podman is not installed (apt-get install podman runc)"
        )
    oci = None
    if cgroup_v1:
        oci = shutil.which("runc")
        if oci is None:
            return RuntimeProbe(
                Runtime.PODMAN,
                False,
                "podman needs runc on cgroup v1 (crun refuses hybrid mode); apt-get install runc",
                binary,
            )
    # --version only: `podman version` sets up its storage and locks, which a probe (doctor
    # as any user) must not leave behind.
    code, text = _ask([binary, "--version"])
    if code != 0:
        return RuntimeProbe(Runtime.PODMAN, False, f"podman does not work here: {text}", binary)
    text = text.removeprefix("podman version ")
    runs_with = f" with {oci}" if oci else ""
    return RuntimeProbe(
        Runtime.PODMAN,
        True,
        f"podman {text}{runs_with} (daemonless: the container is made inside the run)",
        binary,
        oci,
        "cgroupfs",
    )


def probe_docker() -> RuntimeProbe:
    """docker, usable only where its daemon answers and uses the cgroupfs driver."""
    binary = shutil.which("docker")
    if binary is None:
        return RuntimeProbe(Runtime.DOCKER, False, "docker is not installed")
    code, text = _ask([binary, "info", "--format", "{{.CgroupDriver}}"])
    if code != 0:
        return RuntimeProbe(
            Runtime.DOCKER,
            False,
            f"the Docker daemon does not answer ({text or 'docker info failed'}); start it, "
            "or use --runtime podman",
            binary,
        )
    if text != "cgroupfs":
        return RuntimeProbe(
            Runtime.DOCKER,
            False,
            f"the Docker daemon uses the {text} cgroup driver, which puts every container in "
            'a scope of its own, outside the run; set "exec-opts": '
            '["native.cgroupdriver=cgroupfs"] in /etc/docker/daemon.json, or use --runtime '
            "podman",
            binary,
            cgroup_driver=text,
        )
    return RuntimeProbe(
        Runtime.DOCKER,
        True,
        "docker with the cgroupfs driver (--cgroup-parent puts the container in the run)",
        binary,
        cgroup_driver=text,
    )


def probe_runtimes(cgroup_v1: bool) -> dict[Runtime, RuntimeProbe]:
    return {Runtime.PODMAN: probe_podman(cgroup_v1), Runtime.DOCKER: probe_docker()}


def select_runtime(requested: str, cgroup_v1: bool) -> tuple[RuntimeProbe | None, str]:
    """The runtime for `--runtime` (auto: podman first, being daemonless), and why; None
    with the reason when none can be used."""
    if requested != "auto":
        probe = probe_podman(cgroup_v1) if requested == "podman" else probe_docker()
        if not probe.usable:
            return None, f"--runtime {requested}: {probe.reason}"
        return probe, f"{probe.reason}; --runtime {requested}"
    podman = probe_podman(cgroup_v1)
    if podman.usable:
        return podman, f"{podman.reason}; auto: podman first, it needs no daemon"
    docker = probe_docker()
    if docker.usable:
        return docker, f"{docker.reason}; auto: podman is not usable ({podman.reason})"
    return None, (f"--container needs a container runtime: {podman.reason}; {docker.reason}")
