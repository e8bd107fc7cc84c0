"""systemd as PID 1: the run lives in a transient scope in a slice named after its tier.

Asking systemd (instead of writing below our own cgroup) matters where systemd-logind has
put the caller into a session scope: the workload then lands in the tier's slice, under
systemd's own MemoryMax/MemoryHigh/TasksMax/CPUWeight/IOWeight/AllowedCPUs. The scope is
created, delegated, around a placeholder process (`systemd-run --scope ... sleep`) that
keeps it alive until tiered-run has read the final counters; the workload runs in a leaf
of our own inside it, made by the cgroup2 backend (unified hierarchy) or the cgroup1
backend (hybrid, where systemd does not manage cpusets, so that group stays ours).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tiered_run.backends.base import Backend, Usage
from tiered_run.backends.cgroup1 import Cgroup1Backend
from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import (
    PREFIX,
    CgroupDir,
    is_stale,
    own_cgroups,
    parse_proc_cgroup,
    system_mounts,
)
from tiered_run.errors import BackendError
from tiered_run.spec import Limits
from tiered_run.units import format_cpus

_PLACEMENT_WAIT_S = 30.0  # systemd under emulation can be slow to answer


def tier_slice(tier: str | None) -> str:
    """`tiered-<tier>.slice`: systemd nests it as tiered.slice/tiered-<tier>.slice."""
    safe = "".join(c if c.isalnum() or c in "_." else "_" for c in (tier or "default"))
    return f"tiered-{safe}.slice"


def scope_properties(limits: Limits, unified: bool) -> list[str]:
    """systemd properties for the scope; AllowedCPUs and swap exist on cgroup v2 only."""
    props = ["CPUAccounting=yes", "MemoryAccounting=yes", "TasksAccounting=yes"]
    if limits.memory is not None:
        props.append(f"MemoryMax={limits.memory}")
        if unified:
            props.append("MemorySwapMax=0")
    if limits.memory_high is not None:
        props.append(f"MemoryHigh={limits.memory_high}")
    if limits.tasks_max is not None:  # + 1 for the placeholder that keeps the scope alive
        props.append(f"TasksMax={limits.tasks_max + 1}")
    if limits.cpu_weight is not None:
        props.append(f"CPUWeight={limits.cpu_weight}")
    if limits.io_weight is not None:
        props.append(f"IOWeight={limits.io_weight}")
    if unified:
        props.append(f"AllowedCPUs={format_cpus(limits.cpus)}")
    return props


class SystemdBackend(Backend):
    name = "systemd"

    def __init__(self, tier: str | None = None) -> None:
        self.slice = tier_slice(tier)
        self.unit: str | None = None
        self._mounts = system_mounts()
        self._unified = not any(m.version == 1 for m in self._mounts)
        self._view: Backend | None = None
        self._holder: subprocess.Popen[bytes] | None = None
        self._extra: list[CgroupDir] = []
        self.capabilities = frozenset()

    @classmethod
    def unusable_reason(cls) -> str | None:
        if not Path("/run/systemd/system").is_dir():
            return "systemd is not the init system (no /run/systemd/system)"
        if shutil.which("systemd-run") is None:
            return "systemd-run is not installed"
        if os.geteuid() != 0:
            return "transient system scopes need root"
        return None

    def create(self, run_id: str, limits: Limits) -> None:
        self.unit = f"{PREFIX}{run_id}.scope"
        argv = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={self.unit}"]
        argv += [f"--slice={self.slice}", "-p", "Delegate=yes"]
        for prop in scope_properties(limits, self._unified):
            argv += ["-p", prop]
        self._holder = subprocess.Popen(
            [*argv, "--", "sleep", "86400"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        paths = self._wait_for_scope()
        if self._unified:
            mount = next(m for m in self._mounts if m.version == 2)
            scope = mount.path / paths[""].lstrip("/")
            # No processes where controllers are delegated: the placeholder gets a leaf too.
            keep = CgroupDir(scope / f"{PREFIX}{run_id}-keep")
            keep.mkdir()
            keep.write("cgroup.procs", self._holder.pid)
            self._view = Cgroup2Backend(mount, parent=scope)
        else:
            own = own_cgroups()
            self._view = Cgroup1Backend(
                self._mounts, {**own, **{k: paths[k] for k in _SCOPED_V1 if k in paths}}
            )
            # Every other hierarchy: join the scope wherever systemd put it (devices, blkio...).
            self._extra = [
                CgroupDir(m.path / paths[key].lstrip("/"))
                for m in self._mounts
                if m.version == 1 and not m.controllers & _VIEW_V1
                for key in sorted(m.controllers)[:1]
                if key in paths and paths[key] != own.get(key)
            ]
        self._view.create(run_id, limits)
        self.capabilities = self._view.capabilities

    def _wait_for_scope(self) -> dict[str, str]:
        """The placeholder's cgroups once the scope is complete: systemd-run only execs the
        placeholder after systemd has finished moving it into every hierarchy."""
        assert self._holder is not None and self.unit is not None
        proc = Path(f"/proc/{self._holder.pid}")
        deadline = time.monotonic() + _PLACEMENT_WAIT_S
        while time.monotonic() < deadline:
            if self._holder.poll() is not None:
                error = self._holder.stderr.read().decode(errors="replace").strip()
                raise BackendError(f"systemd-run could not create {self.unit}: {error}")
            try:
                if (proc / "comm").read_text().strip() == "sleep":
                    paths = parse_proc_cgroup((proc / "cgroup").read_text())
                    if paths.get("", "").endswith(self.unit):
                        return paths
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        raise BackendError(f"systemd did not create {self.unit} within {_PLACEMENT_WAIT_S:g} s")

    def _require(self) -> Backend:
        if self._view is None:
            raise BackendError("the systemd scope was not created")
        return self._view

    def attach(self) -> None:
        self._require().attach()
        for group in self._extra:
            group.attach_self()

    def started(self, pid: int) -> None:
        self._require().started(pid)

    def sample(self) -> Usage:
        return self._view.sample() if self._view is not None else Usage()

    def pids(self) -> list[int]:
        return self._view.pids() if self._view is not None else []

    def kill(self, sig: int) -> None:
        if self._view is not None:
            self._view.kill(sig)

    def freeze(self, frozen: bool) -> None:
        self._require().freeze(frozen)

    def remove(self) -> None:
        """Our leaf first, then the placeholder: the emptied scope is collected by systemd."""
        try:
            if self._view is not None:
                self._view.remove()
        finally:
            if self._holder is not None:
                self._holder.kill()
                self._holder.wait()
                self._holder.stderr.close()
                self._holder = None
            if self.unit is not None:
                _stop_unit(self.unit)
                self.unit = None

    def cleanup_stale(self) -> list[str]:
        """Stop scopes of runs whose tiered-run is gone, and remove our own stale groups."""
        listed = subprocess.run(
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", f"{PREFIX}*.scope"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
        removed = []
        for line in listed:
            unit = line.split(" ", 1)[0]
            if unit.endswith(".scope") and is_stale(unit.removesuffix(".scope")):
                _stop_unit(unit)
                removed.append(unit)
        if not self._unified:
            removed += Cgroup1Backend(self._mounts).cleanup_stale()
        return removed


# Hierarchies where a delegated scope holds our leaf on a hybrid machine ("" = unified);
# the cpuset and freezer leaves stay below tiered-run's own groups (systemd leaves them alone).
_SCOPED_V1 = ("memory", "pids", "cpuacct", "")
_VIEW_V1 = frozenset({"memory", "pids", "cpuacct", "cpuset", "freezer"})


def _stop_unit(unit: str) -> None:
    """Stop the scope (killing anything left in it); an already-gone unit is fine."""
    subprocess.run(
        ["systemctl", "stop", unit], capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
