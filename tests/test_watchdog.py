"""The watchdog: losing it is a warning, it is never left a zombie, and a run whose
tiered-run and watchdog both died is still killed and removed whole by the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import (
    ALL_BACKENDS,
    HAS_SYSTEMD,
    backend_params,
    gone,
    guard_argv,
    leaked_cgroups,
    run_cli,
    wait_for,
    written_pid,
)
from workloads import PY

pytestmark = pytest.mark.root(reason="guarded runs need root for cgroups here")

# Signals readiness with argv[1], then waits (at most 60 s) for argv[2] to appear.
READY_THEN_WAIT = """
import os, sys, time
open(sys.argv[1], "w").close()
for _ in range(3000):
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.02)
"""


def watchdog_of(guard: subprocess.Popen) -> psutil.Process:
    """The process tiered-run forked for its watchdog: the same command line, outside the run
    (whichever process is its parent now)."""
    cmdline = psutil.Process(guard.pid).cmdline()
    found: list[psutil.Process] = []

    def look() -> bool:
        found[:] = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] == cmdline and p.pid != guard.pid
        ]
        return len(found) == 1

    assert wait_for(look, within=20), f"no watchdog of {guard.pid}"
    return found[0]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_sigkill_of_the_watchdog_is_a_warning_not_the_end(backend, tmp_path):
    ready, go, report = tmp_path / "ready", tmp_path / "go", tmp_path / "report.json"
    guard = run_cli(
        "--backend", backend, "--", PY, "-c", READY_THEN_WAIT, str(ready), str(go),
        command=None, report=report, quiet=True, wait=False, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert wait_for(ready.exists, within=20)
    watchdog_of(guard).kill()  # as a workload or a CI clean-up script might
    go.touch()
    _, stderr = guard.communicate(timeout=60)
    assert guard.returncode == 0, stderr
    data = json.loads(report.read_text())
    assert data["outcome"] == "exited"
    assert [w for w in data["warnings"] if w.startswith("watchdog lost")], data["warnings"]


# A parent that never reaps until the end, as a CI agent running as PID 1: a child
# subreaper, so that whatever tiered-run leaves behind becomes its child. Runs argv[1:],
# waits until none of its children is still running, prints how many zombies it holds.
NON_REAPING_PARENT = """
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
code = subprocess.call(sys.argv[1:])
def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out
def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]
for _ in range(1500):
    if all(state(p) == "Z" for p in children()):
        break
    time.sleep(0.02)
print(code, len(children()))
"""


def test_watchdog_is_no_zombie_under_a_parent_that_never_reaps(tmp_path):
    out = subprocess.run(
        [PY, "-c", NON_REAPING_PARENT, *guard_argv("-q", "--", "true")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    code, zombies = out.stdout.split()
    assert code == "0", out.stderr
    assert zombies == "0"


# Forks a child that moves itself into a cgroup it makes below its own cgroup2 group and
# writes its pid to argv[1], then waits; the child sleeps at most 60 s.
CHILD_IN_A_NESTED_CGROUP = """
import os, sys, time
mount = next(line.split()[4] for line in open("/proc/self/mountinfo")
             if line.split(" - ")[1].startswith("cgroup2 "))
own = next(line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::"))
if os.fork() == 0:
    child = mount + own.rstrip("/") + "/tiered-run-nested"
    os.mkdir(child)
    with open(child + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(60)
    os._exit(0)
os.wait()
"""


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1", "cgroup2"))
def test_sigkill_of_tiered_run_and_watchdog_leaves_a_tree_the_next_start_ends(backend, tmp_path):
    # Nobody is left to clean up after tiered-run: the next start finds the run's groups
    # unlocked, kills what is in them (nested groups included) and removes them deepest first.
    if backend == "cgroup2" and HAS_SYSTEMD:
        pytest.skip(
            "cgroup2 runs start in delegated scopes of their own here: neither sees the other"
        )
    nested = tmp_path / "nested.pid"
    guard = run_cli(
        "--backend", backend, "--", PY, "-c", CHILD_IN_A_NESTED_CGROUP, str(nested),
        command=None, report=False, quiet=True, wait=False,
    )  # fmt: skip
    pid = written_pid(nested)
    watchdog = watchdog_of(guard)
    watchdog.suspend()  # so that it cannot act on tiered-run's death
    guard.kill()
    guard.wait()
    watchdog.kill()
    try:
        assert not gone(pid)
        mine = f"tiered-run-p{guard.pid}-"
        assert [p for p in leaked_cgroups() if mine in p]
        next_run = run_cli(
            "--backend", backend, "--", "true", command=None, report=False, quiet=True
        )
        assert next_run.returncode == 0
        assert wait_for(lambda: gone(pid), within=20)
        assert wait_for(lambda: not [p for p in leaked_cgroups() if mine in p], within=20)
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkill_of_tiered_run_ends_a_plain_trees_setsid_daemon(tmp_path):
    """Without cgroups the watchdog could only kill the workload's process group, so a
    setsid'd daemon outlived a SIGKILLed tiered-run; it now kills the tree as last sampled."""
    from workloads import DAEMON

    pid_file = tmp_path / "daemon.pid"
    proc = run_cli(
        "--backend", "plain", "--interval", "0.1", "--",
        PY, "-c", DAEMON + "\ntime.sleep(30)", str(pid_file),
        command=None, report=False, wait=False,
    )  # fmt: skip
    daemon = written_pid(pid_file)
    time.sleep(0.5)  # samples have told the watchdog the tree
    proc.kill()
    proc.wait()
    assert wait_for(lambda: gone(daemon), within=10)
