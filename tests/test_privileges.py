"""A root workload that gives up privileges cannot undo its limits (`--drop-caps`), and
setuid programs do not raise a workload's privileges (`--no-new-privileges`)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest
from conftest import AUTO_BACKEND, python_cmd, run_cli
from workloads import MEMORY_HOG, PY

from tiered_run.engine import privileges
from tiered_run.model.spec import Privileges

pytestmark = pytest.mark.root(reason="the workloads here run as root")
NOBODY = pwd.getpwnam("nobody")
CAP_SYS_ADMIN = 21
needs_memory_cgroup = pytest.mark.skipif(
    AUTO_BACKEND == "plain", reason="no memory cgroup here: nothing the workload could rewrite"
)

# Finds its own memory limit file (v1 or v2), tries every way out, and says what happened.
ESCAPE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
mounts = [l.split(" - ")[1].split() + l.split()[4:5] for l in open("/proc/self/mountinfo")]
groups = dict(l.strip().split(":", 2)[1:] for l in open("/proc/self/cgroup"))
limit = None
for fstype, _, options, point in mounts:
    if fstype == "cgroup" and "memory" in options.split(","):
        limit = f"{point}{groups['memory']}/memory.limit_in_bytes"
    elif fstype == "cgroup2" and limit is None and groups.get(""):
        candidate = f"{point}{groups['']}/memory.max"
        limit = candidate if os.path.exists(candidate) else None
result = {"limit_file": limit}
def attempt(name, action):
    try:
        action()
        result[name] = "done"
    except OSError as err:
        result[name] = err.strerror
def write(path, text):
    with open(path, "w") as f:
        f.write(text)
attempt("raise_limit", lambda: write(limit, str(400 << 20)))
parent = os.path.dirname(os.path.dirname(limit))
attempt("leave_cgroup", lambda: write(parent + "/cgroup.procs", "0"))
def userns():
    if libc.unshare(0x10000000 | 0x00020000) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
attempt("user_namespace", userns)
def remount():
    point = os.path.dirname(os.path.dirname(limit))
    while not os.path.ismount(point):
        point = os.path.dirname(point)
    if libc.mount(None, point.encode(), None, 32 | 4096, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
attempt("remount_rw", remount)
result["limit_now"] = int(open(limit).read().split()[0]) if limit else None
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))]
result["caps"] = [int(c, 16) for c in caps]
print(json.dumps(result))
"""


def escape(tmp_path: Path, *flags: str) -> dict:
    result = run_cli(*flags, "--memory", "100M", "--", *python_cmd(ESCAPE), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.decode().strip().splitlines()[-1])
    if found["limit_file"] is None:
        pytest.skip("the workload found no memory limit file of its own")
    return found


@needs_memory_cgroup
def test_a_root_workload_can_rewrite_its_limit_without_drop_caps(tmp_path):
    """Why --drop-caps exists: the cgroup files are root's, so plain permissions let it."""
    found = escape(tmp_path)
    assert found["raise_limit"] == "done"
    assert found["limit_now"] == 400 << 20


@needs_memory_cgroup
def test_drop_caps_workload_cannot_rewrite_its_limit_or_leave(tmp_path):
    found = escape(tmp_path, "--drop-caps")

    assert found["raise_limit"] == "Read-only file system"
    assert found["limit_now"] == 100 << 20  # unchanged
    assert found["leave_cgroup"] != "done"
    assert found["user_namespace"] == "Operation not permitted"
    assert found["remount_rw"] == "Operation not permitted"
    effective, bounding = found["caps"]
    assert not effective >> CAP_SYS_ADMIN & 1 and not bounding >> CAP_SYS_ADMIN & 1


@needs_memory_cgroup
def test_drop_caps_workload_is_still_held_at_its_memory_ceiling(tmp_path):
    result = run_cli("--drop-caps", "--memory", "200M", "--", *python_cmd(MEMORY_HOG),
                     tmp_path=tmp_path)  # fmt: skip
    assert result.returncode == 122, result.stderr
    assert result.report["outcome"] == "memory"


def test_drop_caps_workload_still_starts_threads_and_processes(tmp_path):
    code = (
        "import subprocess, threading\n"
        "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())"
    )
    result = run_cli("--drop-caps", "--", *python_cmd(code), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["thread", "child"]


def test_ladder_steps_get_drop_caps_too(tmp_path):
    code = (
        "import sys; bounding = [l for l in open('/proc/self/status') if l.startswith('CapBnd')]; "
        f"sys.exit(int(bounding[0].split()[1], 16) >> {CAP_SYS_ADMIN} & 1)"
    )
    ladder = tmp_path / "l.toml"
    ladder.write_text(f"[[step]]\nname = 'caps'\ncommand = {json.dumps([PY, '-c', code])}\n")
    result = run_cli("--drop-caps", str(ladder), command="ladder", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


# -- no new privileges ---------------------------------------------------------------------


@pytest.fixture
def setuid_id(open_dir):
    """A setuid-root copy of `id` in a temporary directory anyone can walk through."""
    program = open_dir / "id"
    shutil.copy("/usr/bin/id", program)
    program.chmod(0o4755)
    return program


def test_no_new_privileges_keeps_a_setuid_program_from_raising_privileges(setuid_id, tmp_path):
    def euid(*flags: str) -> str:
        proc = run_cli(
            "--user", "nobody", "--cwd", "/", *flags, "--", str(setuid_id), "-u",
            command=None, report=False, quiet=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    if euid() != "0":
        pytest.skip("setuid programs do not take effect here (nosuid mount?)")
    assert euid("--no-new-privileges") == str(NOBODY.pw_uid)


# -- refused where it cannot hold -----------------------------------------------------------


def test_drop_caps_is_refused_when_tiered_run_is_not_root():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 2
        try:
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            reason = privileges.unsupported_reason(Privileges(drop_caps=True))
            code = 0 if reason and "not root" in reason else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_drop_caps_is_refused_where_no_filter_exists(monkeypatch):
    monkeypatch.setattr(privileges, "_FILTER", None)
    reason = privileges.unsupported_reason(Privileges(drop_caps=True))
    assert reason is not None and "no system call filter" in reason


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_jumps_stay_inside_the_program(machine):
    program = privileges._assemble(machine)
    assert program is not None
    count = len(program) // 8
    for index in range(count):
        code, jt, jf = program[index * 8], program[index * 8 + 2], program[index * 8 + 3]
        if code in (0x15, 0x45):  # conditional jumps
            assert index + 1 + max(jt, jf) < count
