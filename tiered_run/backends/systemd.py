"""systemd as PID 1: the run lives in a transient scope in a slice named after its tier.

Asking systemd (instead of writing below our own cgroup) matters where systemd-logind has
put the caller into a session scope: the workload then lands in the tier's slice, under
systemd's own MemoryMax/MemoryHigh/TasksMax/CPUWeight/IOWeight/AllowedCPUs. The scope is
created, delegated, around a placeholder process (`systemd-run --scope ... sleep`) that
keeps it alive until tiered-run has read the final counters; the workload runs in a leaf
of our own inside it, made by the cgroup2 backend (unified hierarchy) or the cgroup1
backend (hybrid, where systemd does not manage cpusets, so that group stays ours).

A scope is stale when the lock on that leaf is free (see ownership): its owner is gone.
The placeholder dies with tiered-run (PR_SET_PDEATHSIG), so a scope whose owner died
before making its leaf empties and is collected by systemd itself. Every systemctl call is
bounded, so a slow or stuck systemd never holds up a start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from tiered_run.backends.base import Backend, CleanupError, Probe
from tiered_run.backends.cgroup1 import Cgroup1Backend
from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import (
    PREFIX,
    CgroupDir,
    Mount,
    own_cgroups,
    parse_proc_cgroup,
    system_mounts,
)
from tiered_run.backends.news import KernelNews
from tiered_run.backends.ownership import Owned, claim, judge
from tiered_run.backends.shares import IO_PROPERTIES
from tiered_run.errors import BackendError
from tiered_run.host.commands import ask
from tiered_run.inputs.units import format_cpus
from tiered_run.model.spec import Limits
from tiered_run.model.usage import CONTAINING, Capability, Usage

_PLACEMENT_WAIT_S = 30.0  # systemd under emulation can be slow to answer
_SYSTEMCTL_WAIT_S = 10.0  # for one systemctl call; systemd answers in milliseconds normally
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the placeholder between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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
    if limits.cpu_quota is not None:
        props.append(f"CPUQuota={limits.cpu_quota:g}%")
    if limits.io_weight is not None:
        props.append(f"IOWeight={limits.io_weight}")
    if limits.io_device is not None:
        device = limits.io_device.node
        for key, value in limits.io_max.items():
            props.append(f"{IO_PROPERTIES[key]}={device} {value}")
    if limits.memory_low is not None and unified:
        props.append(f"MemoryLow={limits.memory_low}")
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
        self._keep: Owned | None = None
        self.capabilities = frozenset()

    @classmethod
    def _probe(cls) -> Probe:
        """systemd as init, systemd-run and root; a scope delegates every controller to us
        (the cpuset on a hybrid machine is tiered-run's own v1 group)."""
        if not Path("/run/systemd/system").is_dir():
            return Probe(False, "systemd is not the init system (no /run/systemd/system)")
        import shutil

        if shutil.which("systemd-run") is None:
            return Probe(False, "systemd-run is not installed")
        if os.geteuid() != 0:
            return Probe(False, "transient system scopes need root")
        caps = CONTAINING | {Capability.OOM_EVENTS, Capability.FREEZE} | _SCOPE_SHARES
        # MemoryHigh= and MemoryLow= need the unified hierarchy; on a hybrid machine the
        # run's memory is a v1 group, which records its peak instead (what the created run
        # reports too).
        unified = not any(m.version == 1 for m in system_mounts())  # as a run decides it
        if unified:
            caps |= {Capability.MEMORY_HIGH, Capability.MEMORY_LOW}
        else:
            caps |= {Capability.MEMORY_PEAK}
        return Probe(True, "systemd is PID 1: transient scope", frozenset(caps))

    def describe(self, reason: str) -> str:
        return f"{reason} in {self.slice}"

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
            preexec_fn=_die_with_parent,
        )
        paths = self._wait_for_scope()
        if self._unified:
            mount = next(m for m in self._mounts if m.version == 2)
            scope = mount.path / paths[""].lstrip("/")
            # No processes where controllers are delegated: the placeholder gets a leaf too.
            self._keep = claim(scope / f"{PREFIX}{run_id}-keep")
            CgroupDir(self._keep.path).write("cgroup.procs", self._holder.pid)
            self._view = Cgroup2Backend(mount, parent=scope, owned_above=1)
        else:
            own = own_cgroups()
            self._view = Cgroup1Backend(
                self._mounts,
                {**own, **{k: paths[k] for k in _SCOPED_V1 if k in paths}},
                owned_above=1,  # the scope's memcg, which carries MemoryMax too
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

    def cgroup_path(self) -> Path | None:
        return self._view.cgroup_path() if self._view is not None else None

    def unified_path(self) -> Path | None:
        return self._view.unified_path() if self._view is not None else None

    def _wait_for_scope(self) -> dict[str, str]:
        """The placeholder's cgroups once the scope is complete: systemd-run only execs the
        placeholder after systemd has finished moving it into every hierarchy."""
        assert self._holder is not None and self.unit is not None
        proc = Path(f"/proc/{self._holder.pid}")
        deadline = time.monotonic() + _PLACEMENT_WAIT_S
        while time.monotonic() < deadline:
            if self._holder.poll() is not None:
                error = self._holder.stderr.read().decode(errors="replace").strip()
                raise BackendError(
                    f"systemd-run could not create {self.unit}: {error}",
                    path=self.unit,
                    operation="create scope",
                )
            try:
                if (proc / "comm").read_text().strip() == "sleep":
                    paths = parse_proc_cgroup((proc / "cgroup").read_text())
                    if paths.get("", "").endswith(self.unit):
                        return paths
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        raise BackendError(
            f"systemd did not create {self.unit} within {_PLACEMENT_WAIT_S:g} s",
            path=self.unit,
            operation="create scope",
        )

    def _require(self) -> Backend:
        if self._view is None:
            raise BackendError(
                f"the systemd scope in {self.slice} was not created",
                path=self.slice,
                operation="use",
            )
        return self._view

    def attach(self) -> None:
        self._require().attach()
        for group in self._extra:
            group.attach_self()

    def started(self, pid: int) -> None:
        self._require().started(pid)

    def news(self) -> KernelNews | None:
        return self._view.news() if self._view is not None else None

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
            if self._keep is not None:
                self._keep.release()  # systemd removes it with the scope
                self._keep = None
            if self.unit is not None:
                unit, self.unit = self.unit, None
                if _systemctl("stop", unit) is None:
                    raise CleanupError(unit, "stop", None, "systemctl stop did not finish")

    def stale_parents(self) -> list[Path]:
        """On a hybrid machine our own groups outside the scopes (the cpuset and freezer
        leaves stay below tiered-run's own groups)."""
        return [] if self._unified else Cgroup1Backend(self._mounts).stale_parents()

    def cleanup_stale(self) -> list[str]:
        """Stop the scopes whose owner is gone (the lock on their leaf is free), then sweep
        our own stale groups outside them. Never raises; each systemctl call is bounded."""
        unified = next((m for m in self._mounts if m.version == 2), None)
        scopes = _stop_stale_scopes(unified) if unified is not None else []
        return scopes + super().cleanup_stale()


# Hierarchies where a delegated scope holds our leaf on a hybrid machine ("" = unified);
# the cpuset and freezer leaves stay below tiered-run's own groups (systemd leaves them alone).
_SCOPED_V1 = ("memory", "pids", "cpuacct", "cpu", "blkio", "")
_VIEW_V1 = frozenset({"memory", "pids", "cpuacct", "cpu", "blkio", "cpuset", "freezer"})
# What systemd's CPUWeight=, CPUQuota=, IOWeight= and IO*Max= give a scope, which it
# hands to the kernel's cpu and io (blkio) controllers; the created run says what its
# own groups got.
_SCOPE_SHARES = frozenset(
    {Capability.CPU_WEIGHT, Capability.CPU_QUOTA, Capability.IO_WEIGHT, Capability.IO_LIMIT}
)


def _systemctl(*args: str) -> str | None:
    """systemctl's output, or None if it failed to run or did not answer in time."""
    done = ask(["systemctl", *args], _SYSTEMCTL_WAIT_S)
    return None if done is None else done.stdout


def _stop_stale_scopes(unified: Mount) -> list[str]:
    listed = _systemctl("list-units", "--all", "--plain", "--no-legend", f"{PREFIX}*.scope")
    units = [
        word
        for line in (listed or "").splitlines()
        for word in line.split()[:2]
        if word.startswith(PREFIX) and word.endswith(".scope")
    ]
    if not units:
        return []
    shown = _systemctl("show", "--property=Id,ControlGroup", *units) or ""
    groups: dict[str, str] = {}
    for block in shown.split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id") and fields.get("ControlGroup"):
            groups[fields["Id"]] = fields["ControlGroup"]
    removed = []
    for unit, group in groups.items():
        leaf = unified.path / group.lstrip("/") / unit.removesuffix(".scope")
        stale = judge(leaf)
        if stale is None:
            continue
        try:
            if stale.may_kill:
                _systemctl("kill", "--signal=SIGKILL", unit)
                if _systemctl("stop", "--no-block", unit) is not None:
                    removed.append(unit)
        finally:
            stale.release()
    return removed
