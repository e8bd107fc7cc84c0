"""Who owns a run's cgroup: a lock held by the live owner, not the pid in its name. Stale
runs are removed whoever has their pid now; live runs in another PID namespace are not."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HAS_SYSTEMD, backend_params, dead_pid, gone, guard_argv, run_cli, wait_for

from tiered_run.backends import systemd
from tiered_run.backends.cgroupfs import Mount, own_cgroups, system_mounts
from tiered_run.backends.ownership import Kind, claim, is_stale, judge, kind_of, new_run_id
from tiered_run.backends.stale import sweep
from tiered_run.errors import BackendError


def hold(path: Path) -> int:
    """Lock `path` through an open file description of its own, as another owner would."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


# ---- names and locks, on plain directories ---------------------------------------------------


def test_names_tell_current_legacy_and_foreign_apart():
    assert kind_of(f"tiered-run-{new_run_id()}") is Kind.CURRENT
    assert kind_of("tiered-run-p42-self") is Kind.CURRENT
    assert kind_of("tiered-run-p42-00ff11-keep") is Kind.CURRENT
    assert kind_of("tiered-run-4242-00ff11") is Kind.LEGACY  # earlier versions
    assert kind_of("tiered-run-4242-self") is Kind.LEGACY
    for foreign in ("tiered-run-escape", "tiered-run-test-1", "user.slice", "tiered-run-p1"):
        assert kind_of(foreign) is Kind.FOREIGN
    # Earlier versions read the first field as a pid to check: ours is never all digits.
    assert not new_run_id().split("-")[0].isdigit()


def test_a_claimed_directory_is_live_until_released(tmp_path):
    owned = claim(tmp_path / f"tiered-run-{new_run_id()}")
    assert judge(owned.path) is None
    owned.release()
    stale = judge(owned.path)
    assert stale is not None and stale.may_kill
    assert judge(owned.path) is None  # held by the first cleaner meanwhile
    stale.release()
    assert is_stale(owned.path)


def test_the_pid_in_a_current_name_does_not_matter(tmp_path):
    # Our own pid, alive: an earlier version would keep this for ever.
    reused = tmp_path / f"tiered-run-p{os.getpid()}-abcdef"
    reused.mkdir()
    assert is_stale(reused)
    fd = hold(reused)
    try:
        assert not is_stale(reused)  # a live owner, whatever its pid (namespace) is
    finally:
        os.close(fd)


def test_legacy_names_are_judged_by_pid_and_never_killed(tmp_path):
    alive = tmp_path / f"tiered-run-{os.getpid()}-abcdef"
    dead = tmp_path / f"tiered-run-{dead_pid()}-abcdef"
    other = tmp_path / "tiered-run-nested"
    for path in (alive, dead, other):
        path.mkdir()
    assert judge(alive) is None
    assert judge(other) is None
    stale = judge(dead)
    assert stale is not None and not stale.may_kill


def test_claim_waits_out_a_cleaner_that_took_the_new_directory(tmp_path):
    # Between mkdir and flock a cleaner may take the directory for a dead run's, find it
    # empty and remove it; the owner then makes it again.
    path = tmp_path / f"tiered-run-{new_run_id()}"
    path.mkdir()
    cleaner = hold(path)

    def clean() -> None:
        time.sleep(0.05)
        path.rmdir()
        os.close(cleaner)

    thread = threading.Thread(target=clean)
    thread.start()
    owned = claim(path, reuse=True)
    thread.join()
    assert os.stat(path).st_ino == os.fstat(owned._fd).st_ino
    assert judge(path) is None
    owned.release()


def test_claim_refuses_a_name_that_exists(tmp_path):
    path = tmp_path / f"tiered-run-{new_run_id()}"
    path.mkdir()
    with pytest.raises(BackendError, match="already exists"):
        claim(path)


def test_sweep_removes_stale_subtrees_deepest_first_and_leaves_the_rest(tmp_path):
    stale = tmp_path / f"tiered-run-p{os.getpid()}-000001"
    (stale / "tiered-run-p7-000002" / "tiered-run-nested").mkdir(parents=True)
    live = claim(tmp_path / f"tiered-run-{new_run_id()}")
    legacy_alive = tmp_path / f"tiered-run-{os.getpid()}-000003"
    legacy_dead = tmp_path / f"tiered-run-{dead_pid()}-000004"
    foreign = tmp_path / "tiered-run-escape"
    for path in (legacy_alive, legacy_dead, foreign):
        path.mkdir()
    removed = sweep([tmp_path, tmp_path / "missing"])
    assert sorted(removed) == sorted([str(stale), str(legacy_dead)])
    assert live.path.exists() and legacy_alive.exists() and foreign.exists()
    live.release()


# ---- the kernel --------------------------------------------------------------------------------


def _unshare_argv(argv: list[str]) -> list[str]:
    """`argv` run as PID 1 of a new PID namespace with its own /proc (inside the delegated
    scope when guard_argv adds one)."""
    at = argv.index(sys.executable)
    return [*argv[:at], "unshare", "--pid", "--fork", "--mount-proc", *argv[at:]]


def _unshare_problem() -> str | None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], check=False)
    return None if probe.returncode == 0 else "unshare --pid cannot create a PID namespace here"


# systemd-run (systemd < 253) passes its pid as seen in its own namespace: a scope cannot be
# made from another PID namespace, so the cleaner there cannot be the systemd backend.
@pytest.mark.root(reason="needs root to make cgroups and PID namespaces")
@pytest.mark.parametrize("backend", backend_params("cgroup1", "cgroup2"))
def test_a_run_in_another_pid_namespace_leaves_a_live_run_alone(backend, tmp_path):
    problem = _unshare_problem()
    if problem:
        pytest.skip(problem)
    if backend == "cgroup2" and HAS_SYSTEMD:
        pytest.skip(
            "cgroup2 runs here start in delegated scopes of their own: neither sees the other"
        )
    ready, go, report = tmp_path / "ready", tmp_path / "go", tmp_path / "first.json"
    wait_for_go = f"touch {ready}; for i in $(seq 600); do [ -e {go} ] && break; sleep 0.05; done"
    first = run_cli(
        "--backend", backend, "--", "sh", "-c", wait_for_go,
        command=None, report=report, quiet=True, wait=False,
    )  # fmt: skip
    assert wait_for(ready.exists, within=30), "the first run did not start"
    # The first run's pid does not exist in the new namespace.
    second = subprocess.run(
        _unshare_argv(guard_argv("-q", "--backend", backend, "--", "true")),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    go.touch()
    assert first.wait(timeout=60) == 0
    data = json.loads(report.read_text())
    assert data["outcome"] == "exited", data["message"]


def _run_parent(backend: str) -> Path:
    """Where a run started from this process makes its cgroups for `backend` (pids for v1)."""
    mounts = system_mounts()
    own = own_cgroups()
    if backend == "cgroup1":
        mount = next(m for m in mounts if m.version == 1 and "pids" in m.controllers)
        return mount.path / own["pids"].lstrip("/")
    mount = next(m for m in mounts if m.version == 2)
    return mount.path / own[""].lstrip("/")


@pytest.mark.root(reason="needs root to make cgroups")
@pytest.mark.parametrize("backend", backend_params("cgroup1", "cgroup2"))
def test_a_dead_runs_cgroup_is_removed_though_its_pid_lives_on(backend, tmp_path, spawned):
    if backend == "cgroup2" and HAS_SYSTEMD:
        pytest.skip("cgroup2 runs here start in a delegated scope of their own")
    # Named after a live process (ours), as when the dead owner's pid was reused.
    stale = _run_parent(backend) / f"tiered-run-p{os.getpid()}-c0ffee"
    stale.mkdir()
    try:
        sleeper = spawned.popen(
            ["sleep", "30"], preexec_fn=lambda: (stale / "cgroup.procs").write_text("0")
        )
        done = run_cli("--backend", backend, "--", "true", command=None, report=False, quiet=True)
        assert done.returncode == 0
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert not stale.exists()
    finally:
        if stale.exists():
            for pid in (stale / "cgroup.procs").read_text().split():
                if not gone(int(pid)):
                    os.kill(int(pid), signal.SIGKILL)
            wait_for(lambda: not (stale / "cgroup.procs").read_text().split())
            stale.rmdir()


# ---- systemd's stale scopes, with a stand-in systemctl -----------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "{log}"
a=tiered-run-p1-0000aa.scope
b=tiered-run-p2-0000bb.scope
case "$1" in
  list-units) [ -n "{hang}" ] && exec sleep 30
    printf '%s loaded active running x\\n' $a $b ;;
  show) printf 'Id=%s\\nControlGroup=/t.slice/%s\\n\\n' $a $a $b $b ;;
esac
"""


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    def make(hang: bool) -> tuple[systemd.SystemdBackend, Path]:
        log = tmp_path / "systemctl.log"
        script = tmp_path / "bin" / "systemctl"
        script.parent.mkdir(exist_ok=True)
        script.write_text(FAKE_SYSTEMCTL.format(log=log, hang="1" if hang else ""))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
        monkeypatch.setattr(systemd, "_SYSTEMCTL_WAIT_S", 0.5)
        backend = systemd.SystemdBackend("batch")
        backend._mounts = [Mount(tmp_path / "unified", 2, frozenset())]
        backend._unified = True
        return backend, log

    return make


def test_systemd_cleanup_stops_only_scopes_whose_leaf_is_free(fake_systemd, tmp_path):
    backend, log = fake_systemd(hang=False)
    live = tmp_path / "unified/t.slice/tiered-run-p1-0000aa.scope/tiered-run-p1-0000aa"
    dead = tmp_path / "unified/t.slice/tiered-run-p2-0000bb.scope/tiered-run-p2-0000bb"
    live.mkdir(parents=True)
    dead.mkdir(parents=True)
    fd = hold(live)
    try:
        assert backend.cleanup_stale() == ["tiered-run-p2-0000bb.scope"]
    finally:
        os.close(fd)
    calls = log.read_text().splitlines()
    assert "kill --signal=SIGKILL tiered-run-p2-0000bb.scope" in calls
    assert "stop --no-block tiered-run-p2-0000bb.scope" in calls
    assert not [c for c in calls if "p1-0000aa" in c and not c.startswith("show")]


def test_systemd_cleanup_never_waits_for_a_stuck_systemctl(fake_systemd):
    backend, log = fake_systemd(hang=True)
    assert backend.cleanup_stale() == []
    assert log.read_text().startswith("list-units")
