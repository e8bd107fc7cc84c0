"""Cgroup2Backend against a fake cgroupfs tree, and against the kernel where we may."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import dead_pid, gone, wait_for

from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import CgroupDir, Mount, kill_until_empty, new_run_id
from tiered_run.errors import BackendError
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability

MIB = 1024**2


def empty_dir(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()


# ---- fake cgroupfs -------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    parent = tmp_path / "work.slice"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "cpuset.mems.effective").write_text("0\n")
    return parent


def fake_backend(parent: Path) -> Cgroup2Backend:
    return Cgroup2Backend(Mount(path=parent.parent, version=2, controllers=frozenset()), parent)


FULL = Limits(cpus=(1,), memory=300 * MIB, memory_high=200 * MIB, tasks_max=50)


def test_create_writes_ceilings_and_enables_controllers(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("123-abc", FULL)
    run = fake / "tiered-run-123-abc"
    assert backend.path == run
    assert (fake / "cgroup.subtree_control").read_text() == "+cpuset +memory +pids +cpu"
    assert (run / "cpuset.cpus").read_text() == "1"
    assert (run / "cpuset.mems").read_text() == "0"
    assert (run / "memory.max").read_text() == "314572800"
    assert (run / "memory.high").read_text() == "209715200"
    assert (run / "memory.oom.group").read_text() == "1"
    assert (run / "pids.max").read_text() == "50"
    assert not (run / "memory.swap.max").exists()  # only written where the kernel has it
    assert backend.capabilities == {
        Capability.CPUSET,
        Capability.MEMORY_LIMIT,
        Capability.MEMORY_HIGH,
        Capability.OOM_EVENTS,
        Capability.TASKS_LIMIT,
        Capability.FREEZE,
        Capability.MEMORY_LOW,
        Capability.CPU_WEIGHT,
        Capability.CPU_QUOTA,
    }


def test_cpu_list_in_kernel_format(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", Limits(cpus=(0, 2, 3, 4)))
    assert (fake / "tiered-run-1-a" / "cpuset.cpus").read_text() == "0,2-4"


def test_none_ceilings_are_not_written(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", Limits(cpus=(0,)))
    run = fake / "tiered-run-1-a"
    written = {p.name for p in run.iterdir()}
    assert written == {"cpuset.cpus", "cpuset.mems", "memory.oom.group"}


def test_already_enabled_controllers_are_not_rewritten(fake: Path) -> None:
    (fake / "cgroup.subtree_control").write_text("memory pids\n")
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    assert (fake / "cgroup.subtree_control").read_text() == "+cpuset +cpu"
    assert Capability.MEMORY_LIMIT in backend.capabilities


def test_no_controllers_degrades_to_process_walk(fake: Path) -> None:
    (fake / "cgroup.controllers").write_text("hugetlb\n")
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    run = fake / "tiered-run-1-a"
    assert (fake / "cgroup.subtree_control").read_text() == ""
    assert list(run.iterdir()) == []
    assert backend.capabilities == {Capability.FREEZE}
    (run / "cgroup.procs").write_text(f"{os.getpid()}\n")
    usage = backend.sample()
    assert usage.memory is not None and usage.memory > 0
    assert usage.tasks is not None and usage.tasks >= 1
    assert usage.memory_peak is None and usage.cpu_s is None


def _busy_until_empty(monkeypatch: pytest.MonkeyPatch, fake: Path) -> None:
    """subtree_control refuses (EBUSY) while the fake parent lists any process."""
    real_write = CgroupDir.write

    def write(self: CgroupDir, name: str, value: object) -> None:
        if name == "cgroup.subtree_control" and (fake / "cgroup.procs").read_text().split():
            raise BackendError("write failed", errno=errno.EBUSY) from OSError(errno.EBUSY, "busy")
        real_write(self, name, value)

    monkeypatch.setattr(CgroupDir, "write", write)


def test_parent_shared_with_other_processes_is_a_clear_error(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake / "cgroup.procs").write_text(f"{os.getpid()}\n4242\n")
    _busy_until_empty(monkeypatch, fake)
    with pytest.raises(BackendError, match=r"also holds processes 4242.*Delegate=yes"):
        fake_backend(fake).create("1-a", FULL)
    assert not (fake / "tiered-run-1-a").exists()


def test_alone_in_the_parent_tiered_run_moves_itself_into_a_leaf(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake / "cgroup.procs").write_text(f"{os.getpid()}\n")
    leaf = fake / f"tiered-run-p{os.getpid()}-self"
    leaf.mkdir()
    (leaf / "cgroup.procs").write_text("")
    real_attach = CgroupDir.attach_self

    def attach_self(self: CgroupDir) -> None:  # the kernel moves us out of the parent
        real_attach(self)
        (fake / "cgroup.procs").write_text("")

    monkeypatch.setattr(CgroupDir, "attach_self", attach_self)
    _busy_until_empty(monkeypatch, fake)
    fake_backend(fake).create("1-a", FULL)
    assert (leaf / "cgroup.procs").read_text() == "0"
    assert (fake / "cgroup.subtree_control").read_text() == "+cpuset +memory +pids +cpu"
    assert (fake / "tiered-run-1-a" / "memory.max").exists()


def test_refused_cpu_controller_is_dropped(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = CgroupDir.write

    def write(self: CgroupDir, name: str, value: object) -> None:
        if name == "cgroup.subtree_control" and "+cpu" in str(value).split():
            raise BackendError("write failed", errno=errno.EINVAL) from OSError(
                errno.EINVAL, "invalid"
            )
        real_write(self, name, value)

    monkeypatch.setattr(CgroupDir, "write", write)
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    assert (fake / "cgroup.subtree_control").read_text() == "+cpuset +memory +pids"


def test_sample_parses_interface_files(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    run = fake / "tiered-run-1-a"
    (run / "memory.current").write_text("1048576\n")
    (run / "memory.peak").write_text("4194304\n")
    (run / "memory.events").write_text("low 0\nhigh 3\nmax 5\noom 1\noom_kill 1\n")
    (run / "pids.current").write_text("7\n")
    (run / "pids.peak").write_text("9\n")
    (run / "pids.events").write_text("max 2\n")
    (run / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    usage = backend.sample()
    assert usage.memory == 1048576
    assert usage.memory_peak == 4194304
    assert usage.oom_kills == 1
    assert usage.memory_high_events == 3
    assert usage.tasks == 7
    assert usage.tasks_peak == 9
    assert usage.tasks_refused == 2
    assert usage.cpu_s == pytest.approx(2.5)
    assert usage.cpus_used is None


def test_sample_without_peak_files(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    run = fake / "tiered-run-1-a"
    (run / "memory.current").write_text("100\n")
    (run / "pids.current").write_text("1\n")
    usage = backend.sample()
    assert (usage.memory, usage.memory_peak, usage.tasks, usage.tasks_peak) == (100, None, 1, None)
    assert (usage.oom_kills, usage.tasks_refused, usage.cpu_s) == (0, 0, None)


def test_started_checks_placement(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    (fake / "tiered-run-1-a" / "cgroup.procs").write_text("4242\n")
    backend.started(4242)
    backend.started(dead_pid())
    with pytest.raises(BackendError, match="landed in cgroup"):
        backend.started(os.getpid())


def test_freeze_writes_control_file(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    backend.freeze(True)
    assert (fake / "tiered-run-1-a" / "cgroup.freeze").read_text() == "1"
    backend.freeze(False)
    assert (fake / "tiered-run-1-a" / "cgroup.freeze").read_text() == "0"


def test_kill_with_other_signal_reaches_listed_processes(fake: Path, spawned) -> None:
    backend = fake_backend(fake)
    backend.create("1-a", FULL)
    sleeper = spawned.popen(["sleep", "30"])
    (fake / "tiered-run-1-a" / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    assert backend.pids() == [sleeper.pid]
    backend.kill(signal.SIGTERM)
    assert sleeper.wait(timeout=5) == -signal.SIGTERM


def test_remove_is_idempotent(fake: Path) -> None:
    backend = fake_backend(fake)
    backend.remove()  # before create
    backend.create("1-a", FULL)
    run = fake / "tiered-run-1-a"
    empty_dir(run)  # a real cgroup dir is removable with its interface files, a fake one is not
    backend.remove()
    assert not run.exists()
    backend.remove()
    assert backend.pids() == []


def test_cleanup_stale_removes_only_dead_owners(fake: Path) -> None:
    stale = fake / f"tiered-run-{dead_pid()}-abc123"
    live = fake / f"tiered-run-{os.getpid()}-abc123"
    stale.mkdir()
    live.mkdir()
    assert fake_backend(fake).cleanup_stale() == [str(stale)]
    assert not stale.exists() and live.exists()


# ---- the kernel ----------------------------------------------------------------------------


@pytest.mark.root(reason="needs root to create cgroups")
class TestKernel:
    @pytest.fixture(autouse=True)
    def _require_cgroup2(self) -> None:
        reason = Cgroup2Backend.unusable_reason()
        if reason:
            pytest.skip(f"no writable cgroup2 mount: {reason}")

    @pytest.fixture
    def procs(self, spawned):
        return spawned

    @pytest.fixture
    def backend(self, procs):
        backend = Cgroup2Backend()
        backend.create(new_run_id(), Limits(cpus=tuple(sorted(os.sched_getaffinity(0)))))
        yield backend
        with contextlib.suppress(BackendError):
            backend.freeze(False)
        backend.kill(signal.SIGKILL)
        procs.reap()  # before rmdir
        backend.remove()

    def spawn(self, backend: Cgroup2Backend, procs, argv: list[str], **kw):
        return procs.popen(argv, preexec_fn=backend.attach, **kw)

    def test_placement_and_sample(self, backend: Cgroup2Backend, procs: list) -> None:
        sleeper = self.spawn(backend, procs, ["sleep", "30"])
        lines = Path(f"/proc/{sleeper.pid}/cgroup").read_text().splitlines()
        v2 = next(line for line in lines if line.startswith("0::"))
        assert backend.path is not None and v2.endswith("/" + backend.path.name)
        backend.started(sleeper.pid)
        assert backend.pids() == [sleeper.pid]
        usage = backend.sample()
        assert usage.tasks is not None and usage.tasks >= 1
        assert usage.memory is not None and usage.memory > 0
        assert usage.cpu_s is not None
        assert Capability.FREEZE in backend.capabilities
        kill_file = (backend.path / "cgroup.kill").exists()
        assert (Capability.ATOMIC_KILL in backend.capabilities) == kill_file

    def test_started_rejects_process_elsewhere(self, backend: Cgroup2Backend, procs) -> None:
        outsider = procs.popen(["sleep", "30"])
        with pytest.raises(BackendError, match="landed in cgroup"):
            backend.started(outsider.pid)

    def test_freeze_stops_the_tree(self, backend: Cgroup2Backend, procs: list) -> None:
        spin = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
        spinner = self.spawn(backend, procs, [sys.executable, "-c", spin])
        events = backend.path / "cgroup.events"

        def cpu_ticks() -> int:
            fields = Path(f"/proc/{spinner.pid}/stat").read_text().rpartition(")")[2].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        assert wait_for(lambda: cpu_ticks() > 0)
        backend.freeze(True)
        assert "frozen 1" in events.read_text().splitlines()
        before = cpu_ticks()
        time.sleep(0.3)
        assert cpu_ticks() == before
        backend.freeze(False)
        assert "frozen 0" in events.read_text().splitlines()
        assert wait_for(lambda: cpu_ticks() > before)

    def test_sigkill_reaches_setsid_grandchild(self, backend: Cgroup2Backend, procs: list) -> None:
        script = (
            "import subprocess, time\nsubprocess.Popen(['setsid', 'sleep', '40'])\ntime.sleep(40)\n"
        )
        parent = self.spawn(backend, procs, [sys.executable, "-c", script])
        parent_sid = os.getsid(parent.pid)

        def escaped() -> list[int]:
            """Members in a session of their own: unreachable by process group."""
            return [p for p in backend.pids() if p != parent.pid and os.getsid(p) != parent_sid]

        assert wait_for(lambda: bool(escaped()))
        grandchildren = escaped()
        backend.kill(signal.SIGKILL)
        assert backend.pids() == []
        assert parent.wait(timeout=5) == -signal.SIGKILL
        assert wait_for(lambda: all(gone(pid) for pid in grandchildren))
        path = backend.path
        backend.remove()
        assert path is not None and not path.exists()

    def test_cleanup_stale_kills_and_removes(self, procs: list) -> None:
        # Named like a run of this process, but nobody holds its lock: its owner is gone.
        backend = Cgroup2Backend()
        stale = CgroupDir(backend.parent / f"tiered-run-p{os.getpid()}-abc123")
        stale.mkdir()
        try:
            sleeper = procs.popen(["sleep", "30"], preexec_fn=stale.attach_self)
            assert stale.procs() == [sleeper.pid]
            assert str(stale.path) in backend.cleanup_stale()
            assert sleeper.wait(timeout=5) == -signal.SIGKILL
            assert not stale.exists()
        finally:
            if stale.exists():
                kill_until_empty(stale, via_kill_file=(stale.path / "cgroup.kill").exists())
                procs.reap()
                stale.rmdir()
