"""A container made inside the run's cgroups, and its removal on every outcome.

The workload's main process is the runtime's client (`podman run ...`), started in the
run's cgroups like any command. podman is daemonless: with `--cgroups=no-conmon` its
monitor (conmon) stays in the client's cgroup, the run's, and the OCI runtime (runc)
creates the container's cgroup from a relative `--cgroup-parent`: below its own cgroup in
each v1 hierarchy, below the hierarchy's root in a hybrid machine's cgroup2 (so the
parent names the run's cgroup2 directory), below the parent of its own on pure v2. Every
process of the container is then in the run's cgroups: the ceilings hold them, the
monitor counts them, the whole-tree kill ends them.

A killed client and conmon leave podman's record of the container and its storage mounts
behind, and runc leaves the directories it made in hierarchies the run does not use
(devices, name=systemd). `remove` takes all of that away after the tree is dead; the
watchdog calls it too when tiered-run itself was killed. Docker's daemon makes the
container itself: with the cgroupfs driver and an absolute `--cgroup-parent` that names
the run's cgroup, the container lands inside the run all the same.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from tiered_run.backends.base import Backend
from tiered_run.backends.cgroupfs import (
    PREFIX,
    Mount,
    own_cgroups,
    parse_proc_cgroup,
    system_mounts,
)
from tiered_run.errors import BackendError
from tiered_run.host.processes import is_alive
from tiered_run.inputs.units import format_cpus
from tiered_run.model.spec import ContainerSpec, Limits, RunSpec, Runtime

REMOVE_TIMEOUT_S = 15.0
# podman applies containers.conf's default nproc (32768) to what starts the container, and
# runc cannot raise a container's RLIMIT_NPROC above it; the pids cgroup holds tasks anyway.
PODMAN_NPROC_MAX = 32768


@dataclass
class ContainerRun:
    """One run's container: the client's argv, and what to remove once the tree is dead."""

    spec: ContainerSpec
    name: str  # tiered-run-<run id>: the container's name, for `rm -f` without its id
    parent: str  # --cgroup-parent
    scratch: Path  # a private directory for the cidfile
    client_cgroups: dict[str, str] = field(default_factory=dict)
    existing: frozenset[Path] = frozenset()  # docker: the groups on its parent's path before

    @classmethod
    def prepare(cls, spec: ContainerSpec, run_id: str, backend: Backend) -> ContainerRun:
        """After the run's cgroups exist: the container nests in the run's cgroup2
        directory (podman), or below its main group (docker; the memory controller's on
        v1)."""
        unified, anchor = backend.unified_path(), backend.cgroup_path()
        name = PREFIX + run_id
        mounts = system_mounts()
        if spec.runtime is Runtime.DOCKER:
            parent = docker_parent(anchor, mounts)
        else:
            parent = cgroup_parent(unified, mounts)
        scratch = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        run = cls(spec, name, parent, scratch)
        if spec.runtime is Runtime.DOCKER:  # the run's own groups, which the backend removes
            run.existing = frozenset(
                path for m in mounts for path in _chain(m.path, parent) if path.is_dir()
            )
        return run

    @property
    def reason(self) -> str:
        """Which runtime runs the container, and why: said after the backend's reason."""
        spec = self.spec
        return f"; container {spec.image} by {spec.runtime.value}: {spec.runtime_reason}"

    def launched(self, spec: RunSpec) -> RunSpec:
        """`spec` with the runtime's client as its command, running the workload's."""
        workdir = (spec.cwd or Path.cwd()).resolve()
        argv = self.argv(spec.command, spec.limits, workdir)
        return replace(spec, command=argv, env=environment())

    @property
    def cidfile(self) -> Path:
        return self.scratch / "cid"

    def argv(self, command: tuple[str, ...], limits: Limits, cwd: Path) -> tuple[str, ...]:
        """`RUNTIME run` with the tier mapped onto the container. Memory and tasks are not
        repeated there: the run's cgroup, above the container's, holds them for the whole
        tree (client and conmon included), and its breach is the run's, as for any command."""
        spec = self.spec
        args = [spec.binary]
        if spec.runtime is Runtime.PODMAN:
            args += ["--cgroup-manager", "cgroupfs"]
            if spec.oci_runtime:
                args += ["--runtime", spec.oci_runtime]
        args += ["run", "--rm", "--name", self.name, "--cidfile", str(self.cidfile)]
        args += ["--cgroup-parent", self.parent, "--cpuset-cpus", format_cpus(limits.cpus)]
        if spec.runtime is Runtime.PODMAN:
            args += ["--cgroups", "no-conmon", "--pids-limit", "-1"]
        args += [f"--ulimit={u}" for u in _ulimits(spec.runtime)]
        args.append("--interactive")
        if not spec.network:
            args += ["--network", "none"]
        if spec.user is not None:
            args += ["--user", f"{spec.user.uid}:{spec.user.gid}"]
            for group in spec.user.groups:
                if group != spec.user.gid:
                    args += ["--group-add", str(group)]
        workdir = spec.cwd or cwd
        if spec.mount_cwd:
            args += ["--volume", f"{cwd}:{cwd}"]
        args += ["--workdir", str(workdir)]
        if spec.private_tmp:
            args += ["--tmpfs", "/tmp"]
        for key, value in spec.env.items():
            args += ["--env", f"{key}={value}"]
        return (*args, spec.image, *command)

    def started(self, pid: int) -> None:
        """The client's cgroups, read while it lives: runc makes the container's v1 groups
        below them, which is where `remove` looks for what it left."""
        with contextlib.suppress(OSError):
            self.client_cgroups = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())

    def remove(self) -> list[str]:
        """Remove the container (the tree is dead), then the cgroups runc made outside the
        run's own hierarchies. Never raises; what could not be removed comes back as
        warnings."""
        warnings: list[str] = []
        cid = self._cid()
        problem = _force_remove(self.spec, self.name)
        if problem is not None:
            warnings.append(f"container {self.name}: {problem}")
        if cid:
            warnings += self._remove_cgroups(cid)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return warnings

    def _cid(self) -> str | None:
        try:
            text = self.cidfile.read_text().strip()
        except OSError:
            return None
        return text if text.isalnum() else None

    def _remove_cgroups(self, cid: str) -> list[str]:
        """What the runtime made in the hierarchies, deepest first, only while empty:
        podman's runc `<client's group>/<parent>/libpod-<id>` of every v1 hierarchy and the
        parents on the way; dockerd's `<parent>/<id>`, and the groups on the way that were
        not there before (in hierarchies the run has no group of its own in)."""
        try:
            mounts = system_mounts()
        except OSError:
            return []
        client = self.client_cgroups or own_cgroups()
        leftovers = []
        for mount in mounts:
            if self.spec.runtime is Runtime.DOCKER:
                made = [p for p in _chain(mount.path, self.parent) if p not in self.existing]
                leftovers += _rmdir_chain([*made, mount.path / self.parent.lstrip("/") / cid])
                continue
            if mount.version != 1 or not mount.controllers:
                continue
            rel = client.get(sorted(mount.controllers)[0])
            if rel is None:
                continue
            base = mount.path / rel.lstrip("/")
            leftovers += _rmdir_chain(
                [*_chain(base, self.parent), base / self.parent / f"libpod-{cid}"]
            )
        return leftovers


def _rmdir_chain(chain: list[Path]) -> list[str]:
    """Remove the directories of `chain` deepest first, stopping at one still in use."""
    for path in reversed(chain):
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
        except OSError as err:
            return [f"cannot remove cgroup {path}: {err.strerror}"]
    return []


def sweep_stale(spec: ContainerSpec, parents: list[Path]) -> list[str]:
    """Remove the containers of runs whose tiered-run and watchdog both died (both killed,
    a power cut): named `tiered-run-p<pid>-...`, their tiered-run gone and no run cgroup of
    that name left in `parents` (the backend's stale cleanup, which runs first, removed
    it). A live run, a nested one included, keeps its container. Returns the names removed."""
    argv = [spec.binary, "ps", "--all", "--format", "{{.Names}}", "--filter", f"name={PREFIX}"]
    if spec.runtime is Runtime.PODMAN:
        argv[1:1] = ["--cgroup-manager", "cgroupfs"]
    try:
        listed = subprocess.run(
            argv, capture_output=True, text=True, timeout=REMOVE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    removed = []
    for name in listed.stdout.split():
        owner = name.removeprefix(PREFIX).partition("-")[0]
        if not name.startswith(PREFIX) or not owner[1:].isdigit() or owner[0] != "p":
            continue
        if is_alive(int(owner[1:])) or any((parent / name).exists() for parent in parents):
            continue
        if _force_remove(spec, name) is None:
            removed.append(name)
    return removed


def _chain(base: Path, parent: str) -> list[Path]:
    """The directories from below `base` down to `base/parent`, outermost first."""
    paths, path = [], base
    for part in Path(parent).parts:
        if part in (".", "/"):
            continue
        path = path / part
        paths.append(path)
    return paths


def cgroup_parent(unified: Path | None, mounts: list[Mount]) -> str:
    """podman's `--cgroup-parent` that puts the container in the run's cgroups, for a client
    that runs in them (see the module's docstring for how runc reads a relative one)."""
    v1 = any(m.version == 1 and m.controllers - {"name=systemd"} for m in mounts)
    cgroup2 = next((m for m in mounts if m.version == 2), None)
    if unified is None or cgroup2 is None:
        if v1:
            return "."  # below the client's own group in every hierarchy: the run's
        raise BackendError("--container needs the run's cgroups; this backend has none")
    if v1:  # hybrid: relative for v1, from the root for cgroup2
        return str(unified.relative_to(cgroup2.path))
    return unified.name  # pure v2: runc starts from the parent of its own group


# The hierarchies whose run group must hold a container: the ceilings, the count, the kill.
HELD = frozenset({"cpuset", "memory", "pids", "freezer", "cpuacct"})


def docker_parent(anchor: Path | None, mounts: list[Mount]) -> str:
    """dockerd is outside the run: its absolute `--cgroup-parent` is one path below every
    hierarchy's root, so the run's group must be at that same path in every hierarchy that
    holds it (and in cgroup2, which kills it). Where tiered-run's own groups differ (a
    memory group of its own, as a job manager makes), no one path names the run's."""
    home = next((m for m in mounts if anchor is not None and anchor.is_relative_to(m.path)), None)
    if anchor is None or home is None:
        raise BackendError("--runtime docker needs the run's cgroups; this backend has none")
    rel = anchor.relative_to(home.path)
    missing = [
        str(m.path)
        for m in mounts
        if (m.version == 2 or m.controllers & HELD) and not (m.path / rel).is_dir()
    ]
    if missing:
        raise BackendError(docker_refusal(f"/{rel} is not the run's group in {missing[0]}"))
    return f"/{rel}"


def docker_refusal(why: str) -> str:
    return (
        f"--runtime docker: the run's cgroup is not at one path in every hierarchy ({why}), "
        "so dockerd cannot be told to place the container in it; use --runtime podman"
    )


def _ulimits(runtime: Runtime) -> list[str]:
    """The current open-files and processes limits: a container may not raise them (no
    CAP_SYS_RESOURCE here), and the runtimes' own defaults are above them."""
    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = resource.getrlimit(which)
        if which == resource.RLIMIT_NPROC and runtime is Runtime.PODMAN:
            soft, hard = (_below(v, PODMAN_NPROC_MAX) for v in (soft, hard))
        limits.append(f"{name}={_value(soft)}:{_value(hard)}")
    return limits


def _below(value: int, ceiling: int) -> int:
    return ceiling if value == resource.RLIM_INFINITY else min(value, ceiling)


def _value(value: int) -> str:
    return "-1" if value == resource.RLIM_INFINITY else str(value)


def _force_remove(spec: ContainerSpec, name: str) -> str | None:
    """`rm -f` the container by name; None once it is gone. podman whose conmon was killed
    first fails (the container is "stopping" with no one to record its exit), and then
    succeeds: it is tried twice."""
    argv = [spec.binary, "rm", "--force", name]
    if spec.runtime is Runtime.PODMAN:
        argv[1:1] = ["--cgroup-manager", "cgroupfs"]
        argv[-1:-1] = ["--time", "0"]
    last = ""
    for _ in range(2):
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=REMOVE_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            last = str(err)
            continue
        if done.returncode == 0 or _gone(done.stderr):
            return None
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "rm failed"
    return f"could not be removed: {last}; remove it with {spec.runtime.value} rm -f {name}"


def _gone(stderr: str) -> bool:
    return "no such container" in stderr.lower() or "no container with name" in stderr.lower()


def environment() -> dict[str, str]:
    """The client's environment: tiered-run's own (the runtime's configuration lives in
    it); the workload in the container gets only what `--env` gives."""
    return dict(os.environ)
