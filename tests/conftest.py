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

from tiered_run.backends import Cgroup1Backend, Cgroup2Backend

IS_ROOT = os.geteuid() == 0
BACKEND_PROBLEMS = {
    "cgroup1": Cgroup1Backend.unusable_reason(),
    "cgroup2": Cgroup2Backend.unusable_reason(),
    "plain": None,
}
HAS_CPUSET = BACKEND_PROBLEMS["cgroup1"] is None or (
    BACKEND_PROBLEMS["cgroup2"] is None and not Cgroup2Backend.missing_controllers()
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


ALL_BACKENDS = backend_params("cgroup1", "cgroup2", "plain")


def leaked_cgroups() -> list[str]:
    return [
        str(p)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for p in (Path(root) / d for d in dirs)
        if p.name.startswith("tiered-run-")
    ]


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str
    report: dict | None


def run_cli(*args: str, tmp_path: Path, timeout: float = 90) -> Result:
    """`tiered-run run --report FILE ARGS...`; returns its exit code, output and report."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tiered_run", "run", "--report", str(report), *args],
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
