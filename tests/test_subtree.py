"""A run is its whole cgroup subtree: nested runs and workloads that make cgroups of their own
are killed and removed with it, a cleanup that fails never loses the result, and a nested
run reports the ceiling that was hit."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import backend_params, gone, run_cli, wait_for, written_pid
from workloads import MEMORY_HOG, PY

from tiered_run.backends import Cgroup2Backend
from tiered_run.backends.cgroupfs import own_cgroups, system_mounts

pytestmark = pytest.mark.root(reason="guarded runs need root for cgroups here")

CGROUP_BACKENDS = backend_params("systemd", "cgroup1", "cgroup2")

# Moves itself into a cgroup it makes below its own cgroup2 group, ignores SIGTERM, and
# writes "<pid> <child cgroup>" to argv[1]; sleeps at most 60 s, past any timeout_s.
ESCAPE_INTO_CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
mount = next(line.split()[4] for line in open("/proc/self/mountinfo")
             if line.split(" - ")[1].startswith("cgroup2 "))
own = next(line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::"))
child = mount + own.rstrip("/") + "/tiered-run-escape"
os.mkdir(child)
with open(child + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def run_dirs(fragment: str) -> list[str]:
    """Every cgroup directory, in any hierarchy, whose path names `fragment` (a run id)."""
    return [
        path
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for path in (os.path.join(root, d) for d in dirs)
        if fragment in path
    ]


def inner_argv(backend: str, *args: str) -> list[str]:
    """A nested tiered-run: the outer's backend, except systemd, where a nested run picks its
    own (cgroups below its own, inside the outer scope)."""
    chosen = [] if backend == "systemd" else ["--backend", backend]
    return [PY, "-m", "tiered_run", *chosen, *args]


@pytest.fixture(scope="module")
def timeout_s(tmp_path_factory) -> str:
    """A timeout that a nested tiered-run's own start fits in: four times a whole
    `tiered-run -- true` here (a fraction of a second; seconds under emulation), 2 to 40 s."""
    start = time.monotonic()
    run_cli("--", "true", tmp_path=tmp_path_factory.mktemp("startup"))
    return f"{min(40.0, max(2.0, 4 * (time.monotonic() - start))):.1f}"


@pytest.mark.parametrize("backend", CGROUP_BACKENDS)
def test_timeout_kills_and_removes_a_nested_run_whole(backend, tmp_path, timeout_s):
    # The repro: the inner run's cgroups below the outer's made removal fail (EBUSY)
    # with exit 125, no report, and 12 directories left that broke every later start.
    sleeper = tmp_path / "sleeper.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {sleeper}; wait"
    inner = inner_argv(backend, "-q", "--timeout", "30", "--kill-after", "5")
    result = run_cli(
        "--backend",
        backend,
        "--timeout",
        timeout_s,
        "--kill-after",
        "0.5",
        "--",
        *inner,
        "--",
        "bash",
        "-c",
        script,
        tmp_path=tmp_path,
    )
    assert result.returncode == 124, result.stderr
    report = result.report
    assert report["outcome"] == "timeout"
    assert report["warnings"] == []
    assert sleeper.exists(), "the nested workload did not start within the outer timeout"
    assert gone(int(sleeper.read_text()))
    assert run_dirs(report["run_id"]) == []
    # Nothing left behind makes the next start fail.
    assert run_cli("--backend", backend, "--", "true", tmp_path=tmp_path).returncode == 0


@pytest.mark.parametrize("backend", CGROUP_BACKENDS)
def test_workload_hiding_in_a_child_cgroup_is_killed_at_the_timeout(backend, tmp_path, timeout_s):
    info = tmp_path / "escaped"
    result = run_cli(
        "--backend",
        backend,
        "--timeout",
        timeout_s,
        "--kill-after",
        "0.5",
        "--",
        PY,
        "-c",
        ESCAPE_INTO_CHILD,
        str(info),
        tmp_path=tmp_path,
    )
    pid, child = info.read_text().split()
    try:
        assert result.returncode == 124, result.stderr
        assert result.report["outcome"] == "timeout"
        assert result.report["warnings"] == []
        assert gone(int(pid))
        assert not os.path.exists(child)
    finally:
        if not gone(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


# Forks a child that moves itself out of the run's cgroup2 group into argv[2] (a group the
# test made), so that only the run's v1 groups still hold it, and then writes its pid to
# argv[1]; the parent exits 0 once it has. The child sleeps at most 30 s.
LEAVE_UNIFIED = """
import os, sys, time
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # as a daemon would: the run's output does not wait for it
        os.dup2(null, fd)
    with open(sys.argv[2] + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(30)
    os._exit(0)
for _ in range(1500):
    if os.path.exists(sys.argv[1]):
        break
    time.sleep(0.02)
"""


@pytest.fixture
def unified_group():
    """A cgroup2 group of the test's own, below its own cgroup; removed at the end."""
    mount = next((m for m in system_mounts() if m.version == 2), None)
    if mount is None or not any(m.version == 1 for m in system_mounts()):
        pytest.skip("needs a hybrid machine (cgroup v1 controllers and a cgroup2 mount)")
    group = mount.path / own_cgroups()[""].lstrip("/") / f"tiered-run-test-{os.getpid()}"
    group.mkdir()
    yield group
    assert wait_for(lambda: not (group / "cgroup.procs").read_text().split(), within=20)
    group.rmdir()


@pytest.mark.parametrize("backend", backend_params("cgroup1"))
def test_cleanup_that_fails_keeps_the_result_and_the_next_start_retries(
    backend, tmp_path, unified_group
):
    child = tmp_path / "child.pid"
    result = run_cli(
        "--backend",
        backend,
        "--",
        PY,
        "-c",
        LEAVE_UNIFIED,
        str(child),
        str(unified_group),
        tmp_path=tmp_path,
    )
    escaped = int(child.read_text())
    try:
        assert result.returncode == 0, result.stderr
        report = result.report
        assert report["outcome"] == "exited"
        (warning,) = report["warnings"]
        assert warning.startswith("cleanup: cannot remove cgroup ")
        assert "Device or resource busy" in warning
        assert "warning: cleanup" in result.stderr
        assert run_dirs(report["run_id"])
        # The next start takes the dead run's groups (their lock is free) and removes them,
        # killing what is left in them.
        assert run_cli("--backend", backend, "--", "true", tmp_path=tmp_path).returncode == 0
        assert wait_for(lambda: gone(escaped), within=20)
        assert run_dirs(report["run_id"]) == []
    finally:
        if not gone(escaped):
            os.kill(escaped, signal.SIGKILL)


def _memory_skip(backend: str) -> None:
    if backend == "cgroup2" and Cgroup2Backend.missing_controllers():
        pytest.skip("cgroup2 here has no memory controller: no kernel OOM to attribute")


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1", "cgroup2"))
def test_oom_at_the_outer_ceiling_is_reported_by_both_runs(backend, tmp_path):
    _memory_skip(backend)
    inner_report = tmp_path / "inner.json"
    inner = inner_argv(backend, "--memory", "1G", "--report", str(inner_report))
    # Both runs hear of the OOM at once. The outer one first looks for 5 s before it ends
    # its tree, so the inner run has written its report by then instead of being ended.
    result = run_cli(
        "--backend",
        backend,
        "--memory",
        "300M",
        "--before-kill",
        "sleep 5",
        "--timeout",
        "60",
        "--",
        *inner,
        "--",
        PY,
        "-c",
        MEMORY_HOG,
        tmp_path=tmp_path,
    )
    assert result.returncode == 122, result.stderr
    outer = result.report
    assert outer["outcome"] == "memory"
    assert "at the 300.0 MiB ceiling" in outer["message"]
    if not inner_report.exists():
        # cgroup v2: memory.oom.group kills the whole outer group, the inner run included.
        assert backend != "cgroup1", "the inner run wrote no report"
        return
    data = json.loads(inner_report.read_text())
    assert data["outcome"] == "memory"
    assert data["exit_code"] == 122
    assert "enclosing cgroup" in data["message"], data["message"]
    assert "not at this run's 1.0 GiB" in data["message"]


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1", "cgroup2"))
def test_oom_at_the_inner_ceiling_is_the_inner_runs_outcome(backend, tmp_path):
    _memory_skip(backend)
    inner_report = tmp_path / "inner.json"
    inner = inner_argv(backend, "--memory", "300M", "--report", str(inner_report))
    result = run_cli(
        "--backend",
        backend,
        "--memory",
        "1G",
        "--timeout",
        "60",
        "--",
        *inner,
        "--",
        PY,
        "-c",
        MEMORY_HOG,
        tmp_path=tmp_path,
    )
    data = json.loads(inner_report.read_text())
    assert data["outcome"] == "memory"
    assert "at the 300.0 MiB ceiling" in data["message"]
    # The outer ceiling was not hit: the nested run's exit code is the outer workload's own.
    assert result.returncode == 122, result.stderr
    assert result.report["outcome"] == "exited"
    assert result.report["message"] == "exited with code 122"


@pytest.mark.parametrize("backend", CGROUP_BACKENDS)
def test_sigkill_of_an_outer_run_ends_and_removes_the_nested_run_too(backend, tmp_path):
    sleeper = tmp_path / "sleeper.pid"
    script = f"sleep 60 & echo $! > {sleeper}; wait"
    outer = run_cli(
        "--backend", backend, "--", *inner_argv(backend, "-q"), "--", "sh", "-c", script,
        command=None, report=False, quiet=True, wait=False,
    )  # fmt: skip
    pid = written_pid(sleeper)
    outer.kill()
    outer.wait()
    assert wait_for(lambda: gone(pid), within=20)
    assert wait_for(lambda: run_dirs(f"tiered-run-p{outer.pid}-") == [], within=20)
