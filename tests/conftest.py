"""Capabilities probed once, helpers to run the real CLI, and a leak check for the suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tiered_run.backends import Cgroup1Backend, Cgroup2Backend, SystemdBackend, select_backend
from tiered_run.backends.cgroupfs import is_stale

IS_ROOT = os.geteuid() == 0
HAS_SYSTEMD = SystemdBackend.unusable_reason() is None
# Under systemd our own cgroup holds other processes; cgroup2 then needs what a user would
# give it: a delegated scope of its own.
DELEGATED = ["systemd-run", "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--"]


def _cgroup2_problem() -> str | None:
    if not HAS_SYSTEMD:
        return Cgroup2Backend.unusable_reason()
    probe = "from tiered_run.backends import Cgroup2Backend as B; print(B.unusable_reason() or '')"
    out = subprocess.run([*DELEGATED, sys.executable, "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() or (out.stderr.strip() if out.returncode else None)


BACKEND_PROBLEMS = {
    "systemd": SystemdBackend.unusable_reason(),
    "cgroup1": Cgroup1Backend.unusable_reason(),
    "cgroup2": _cgroup2_problem(),
    "plain": None,
}
HAS_CPUSET = (
    HAS_SYSTEMD
    or BACKEND_PROBLEMS["cgroup1"] is None
    or (BACKEND_PROBLEMS["cgroup2"] is None and not Cgroup2Backend.missing_controllers())
)
ONLINE_CPUS = sorted(os.sched_getaffinity(0))


def backend_params(*names: str) -> list:
    """One pytest param per backend, skipped with the reason where it cannot work here."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                BACKEND_PROBLEMS[name] is not None, reason=f"{name}: {BACKEND_PROBLEMS[name]}"
            ),
            id=name,
        )
        for name in names
    ]


AUTO_BACKEND = select_backend()[0].name
ALL_BACKENDS = backend_params("systemd", "cgroup1", "cgroup2", "plain")


def guard_argv(*args: str) -> list[str]:
    """`python -m tiered_run ARGS`, in a delegated scope where cgroup2 needs one."""
    argv = [sys.executable, "-m", "tiered_run", *args]
    if HAS_SYSTEMD and "--backend" in args and args[args.index("--backend") + 1] == "cgroup2":
        return [*DELEGATED, *argv]
    return argv


def leaked_cgroups() -> list[str]:
    """Run cgroups whose tiered-run is gone; live runs of other programs are not leaks."""
    return [
        str(p)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for p in (Path(root) / d for d in dirs)
        if is_stale(p)
    ]


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str
    report: dict | None


def run_cli(*args: str, tmp_path: Path, command: str = "run", timeout: float = 90) -> Result:
    """`tiered-run COMMAND --report FILE ARGS...`; returns its exit code, output and report."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    proc = subprocess.run(
        guard_argv(command, "--report", str(report), *args),
        capture_output=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return Result(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"), data)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def spawned():
    """Processes a test starts itself; whatever is still alive at the end is killed by pid."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def no_leftovers():
    before = set(leaked_cgroups())
    yield
    leaked = set(leaked_cgroups()) - before
    assert not leaked, f"cgroups left behind by the suite: {sorted(leaked)}"


def pid_file_value(path: Path) -> int:
    return int(path.read_text().split()[0])


def python_cmd(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for(condition, within: float = 10.0, step: float = 0.01) -> bool:
    """Poll `condition` until it holds or `within` seconds pass; returns the last result."""
    import time

    deadline = time.monotonic() + within
    while not (ok := condition()) and time.monotonic() < deadline:
        time.sleep(step)
    return bool(ok)
