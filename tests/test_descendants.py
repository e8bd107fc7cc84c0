"""What a run leaves to its caller: no zombies under a parent that never reaps, and the
descriptors the caller passed on purpose reach the workload."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ALL_BACKENDS, guard_argv, run_cli
from workloads import PY

# Three setsid'd sleepers left behind by a workload that exits at once.
THREE_DAEMONS = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(30)
        os._exit(0)
    os.wait()
"""

# A parent that never reaps anything but its own child: a subreaper (as a CI agent running
# as PID 1 is for its whole tree) that waits for tiered-run only, then counts its zombies.
NEVER_REAPS = """
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
code = subprocess.call(sys.argv[1:])

def children():
    pids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids

def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None

deadline = time.monotonic() + 15  # a watchdog may still be finishing its clean-up
while any(state(p) not in ("Z", None) for p in children()) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"code": code, "zombies": [p for p in children() if state(p) == "Z"]}))
"""


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_no_zombies_are_left_under_a_parent_that_never_reaps(backend, tmp_path):
    argv = guard_argv("--backend", backend, "--kill-after", "0.5", "--", PY, "-c", THREE_DAEMONS)
    out = subprocess.run(
        [PY, "-c", NEVER_REAPS, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=90
    )
    result = json.loads(out.stdout)
    assert result["code"] == 0, out.stderr
    assert result["zombies"] == []


def test_descriptors_the_caller_passes_reach_the_workload(tmp_path):
    """`make -j` hands its jobserver pipe to children as fd 3+; `timeout` passes it on."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    code = f"import os; os.write({write_end}, b'token')"
    proc = run_cli("--", PY, "-c", code, command=None, report=False, pass_fds=(write_end,))
    os.close(write_end)
    assert proc.returncode == 0
    assert os.read(read_end, 100) == b"token"
    os.close(read_end)


def test_tiered_runs_own_descriptors_do_not_reach_the_workload(tmp_path):
    code = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
    proc = run_cli("--log", "out.txt", "--", PY, "-c", code, command=None, report=False, text=True)
    assert proc.returncode == 0
    fds = json.loads(proc.stdout)
    assert [fd for fd in fds if fd > 2] in ([], [3])  # 3: listdir's own, at most
