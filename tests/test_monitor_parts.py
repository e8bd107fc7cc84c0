"""The monitor's building blocks: host samples from /proc, the timeline, peaks, tree kill."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Spawned
from factories import host_state

from tiered_run.backends.base import Backend, Probe
from tiered_run.engine.accounting import TIMELINE_POINTS, Peaks, Timeline
from tiered_run.engine.ending import terminate_tree
from tiered_run.host.machine import HostReader, parse_psi_avg10, read_cpu_busy
from tiered_run.model.report import TimelinePoint
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Usage

GiB = 1024**3

PSI_CPU = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\n"
PSI_MEMORY = (
    "some avg10=40.25 avg60=2.00 avg300=0.50 total=99\n"
    "full avg10=30.00 avg60=1.00 avg300=0.10 total=88\n"
)
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         100000 kB\nMemAvailable:    2048000 kB\n"


def fake_proc(root: Path, *, loadavg: str = "3.25 2.00 1.00 2/345 6789\n", psi=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "loadavg").write_text(loadavg)
    (root / "meminfo").write_text(MEMINFO)
    if psi is not None:
        (root / "pressure").mkdir()
        for name, text in psi.items():
            (root / "pressure" / name).write_text(text)
    return root


# -- host samples from a fake /proc -----------------------------------------------------


def test_host_reader_reads_load_available_memory_and_pressure(tmp_path):
    proc = fake_proc(tmp_path / "proc", psi={"cpu": PSI_CPU, "memory": PSI_MEMORY})
    reader = HostReader(proc)
    assert reader.has_pressure
    state = reader.read()
    assert state.load1 == 3.25
    assert state.memory_available == 2048000 * 1024
    assert state.pressure == {"cpu": 12.5, "memory": 40.25}
    assert state.pressure_max == 40.25


def test_host_reader_without_pressure_files(tmp_path):
    reader = HostReader(fake_proc(tmp_path / "proc"))
    assert not reader.has_pressure
    state = reader.read()
    assert state.pressure == {}
    assert state.pressure_max is None


def test_host_reader_follows_changes_between_samples(tmp_path):
    proc = fake_proc(tmp_path / "proc", psi={"cpu": PSI_CPU})
    reader = HostReader(proc)
    assert reader.read().load1 == 3.25
    (proc / "loadavg").write_text("9.50 2.00 1.00 2/345 6789\n")
    (proc / "pressure" / "cpu").write_text(PSI_CPU.replace("12.50", "77.00"))
    state = reader.read()
    assert state.load1 == 9.5
    assert state.pressure == {"cpu": 77.0}


def test_host_reader_skips_an_unreadable_pressure_file(tmp_path):
    proc = fake_proc(tmp_path / "proc", psi={"cpu": PSI_CPU})
    (proc / "pressure" / "io").mkdir()  # exists but cannot be read as a file
    state = HostReader(proc).read()
    assert state.pressure == {"cpu": 12.5}


def test_psi_avg10_is_taken_from_its_field():
    assert parse_psi_avg10("some avg10=0.00 avg60=0.00 avg300=0.00 total=0") == 0.0
    assert parse_psi_avg10("some avg60=5.00 avg10=1.23 total=0") == 1.23
    with pytest.raises(ValueError, match="no avg10"):
        parse_psi_avg10("some avg60=5.00 total=0")


def test_cpu_busy_per_cpu_from_proc_stat(tmp_path):
    (tmp_path / "stat").write_text(
        "cpu  400 0 200 3000 100 0 0 0 0 0\n"
        "cpu0 100 10 50 800 40 0 0 0 0 0\n"
        "cpu1 300 0 150 2200 60 5 5 0 0 0\n"
        "cpu3 1 2 3 4 5 6 7 8 0 0\n"
        "intr 12345 0 0\n"
        "ctxt 999\n"
        "cpu9 1000 0 0 0 0 0 0 0 0 0\n"
    )
    busy = read_cpu_busy(tmp_path)
    # busy = everything but idle and iowait; total = the first eight fields
    assert busy == {
        0: (160, 1000),
        1: (460, 2720),
        3: (1 + 2 + 3 + 6 + 7 + 8, 36),
    }


# -- timeline ---------------------------------------------------------------------------


def point(t: float) -> TimelinePoint:
    return TimelinePoint(t, None, None, None, 0.0, None)


def test_short_timeline_keeps_every_point():
    timeline = Timeline()
    for i in range(100):
        timeline.add(point(i))
    assert [p.t for p in timeline.points] == list(range(100))


def test_thinning_keeps_each_buckets_maximum():
    """An 18 GiB one-sample spike vanished from a 15-minute timeline (3600 samples)."""
    timeline = Timeline()
    for i in range(3600):
        memory = 18 * GiB if i == 1777 else GiB
        timeline.add(TimelinePoint(i * 0.25, memory, 1, i * 0.1, None, None))
    points = timeline.finished()
    assert len(points) <= TIMELINE_POINTS
    assert max(p.memory_bytes for p in points) == 18 * GiB
    assert points[-1].cpu_s == 3599 * 0.1  # CPU time is cumulative: the bucket's last


def test_long_timeline_is_bounded_and_evenly_thinned():
    timeline = Timeline()
    total = 10_000
    for i in range(total):
        timeline.add(point(i))
        assert len(timeline.points) <= TIMELINE_POINTS
    times = [p.t for p in timeline.points]
    assert times[0] == 0
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert len(gaps) == 1, f"uneven spacing: {sorted(gaps)}"
    stride = gaps.pop()
    assert stride > 1 and stride & (stride - 1) == 0  # a power of two
    assert len(times) >= TIMELINE_POINTS // 4
    # the thinned timeline still covers the whole run
    assert times[-1] >= total - 2 * stride


# -- peaks ------------------------------------------------------------------------------


def test_peaks_take_the_max_of_samples_and_kernel_peaks():
    peaks = Peaks()
    peaks = peaks.with_usage(Usage(memory=100, memory_peak=150, tasks=3, tasks_peak=5, cpu_s=1.0))
    peaks = peaks.with_usage(
        Usage(memory=120, memory_peak=None, tasks=4, tasks_peak=None, cpu_s=2.5)
    )
    peaks = peaks.with_usage(Usage(memory=90, memory_peak=400, tasks=2, tasks_peak=None, cpu_s=2.0))
    assert peaks.memory == 400
    assert peaks.tasks == 5
    assert peaks.cpu_s == 2.5


def test_peaks_ignore_unmeasured_values():
    peaks = Peaks()
    peaks = peaks.with_usage(Usage())
    assert peaks.memory is None and peaks.tasks is None and peaks.cpu_s is None
    peaks = peaks.with_usage(Usage(memory=10, tasks=1))
    peaks = peaks.with_usage(Usage())
    assert peaks.memory == 10
    assert peaks.tasks == 1


def test_peaks_union_of_cpus_seen_and_whether_they_are_known():
    peaks = Peaks()
    peaks = peaks.with_usage(Usage())
    assert not peaks.cpus_known
    peaks = peaks.with_usage(Usage(cpus_used=frozenset({4, 5})))
    peaks = peaks.with_usage(Usage(cpus_used=frozenset({5, 7})))
    assert peaks.cpus_known
    assert peaks.cpus_seen == {4, 5, 7}


def test_peaks_of_the_host():
    peaks = Peaks()
    peaks = peaks.with_host(host_state(load1=2.0, memory_available=3 * GiB))
    assert peaks.pressure is None
    peaks = peaks.with_host(host_state(load1=5.0, memory_available=1 * GiB, cpu=30.0))
    peaks = peaks.with_host(host_state(load1=1.0, memory_available=2 * GiB, io=10.0))
    assert peaks.load1 == 5.0
    assert peaks.pressure == 30.0
    assert peaks.memory_available_min == 1 * GiB


# -- terminate_tree over real processes ------------------------------------------------

IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(30)"
)


class ProcessListBackend(Backend):
    """A run made of processes this test started; pids() reaps the ones that died."""

    name = "process-list"

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs
        self.signals: list[int] = []
        self.polls: list[list[int]] = []  # what each look at the tree found

    @classmethod
    def _probe(cls) -> Probe:
        return Probe(True, "processes this test started")

    def create(self, run_id: str, limits: Limits) -> None:
        pass

    def attach(self) -> None:
        pass

    def started(self, pid: int) -> None:
        pass

    def sample(self) -> Usage:
        return Usage(tasks=len(self.pids()))

    def pids(self) -> list[int]:
        self.polls.append([proc.pid for proc in self.procs if proc.poll() is None])
        return self.polls[-1]

    def kill(self, sig: int) -> None:
        self.signals.append(sig)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def freeze(self, frozen: bool) -> None:
        self.kill(signal.SIGSTOP if frozen else signal.SIGCONT)

    def remove(self) -> None:
        pass


def start_sleepers(procs: Spawned, count: int) -> None:
    for _ in range(count):
        procs.popen(["sleep", "30"])


def start_term_ignorer(procs: Spawned) -> subprocess.Popen:
    proc = procs.popen([sys.executable, "-c", IGNORE_TERM], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    return proc


def wait_all_dead(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.wait(timeout=2)


def test_terminate_tree_sigkills_what_ignores_sigterm(spawned):
    start_sleepers(spawned, 2)
    ignorer = start_term_ignorer(spawned)
    backend = ProcessListBackend(spawned)
    started = time.monotonic()
    killed = terminate_tree(backend, grace=0.3)
    took = time.monotonic() - started
    assert killed == 1
    # SIGCONT right after the ending signal, so a stopped process acts on it.
    assert backend.signals == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]
    assert took >= 0.25  # the grace was waited out before the SIGKILL
    assert backend.polls[-1] == [ignorer.pid]  # what the SIGKILL was for: only the ignorer
    wait_all_dead(spawned)
    assert ignorer.returncode == -signal.SIGKILL
    assert [p.returncode for p in spawned[:2]] == [-signal.SIGTERM, -signal.SIGTERM]


def test_terminate_tree_stops_early_when_all_exit_on_sigterm(spawned):
    start_sleepers(spawned, 3)
    backend = ProcessListBackend(spawned)
    # An hour of grace, which a minute's join cannot wait out; the hurry only frees a
    # terminate_tree that would, so that the test fails instead of hanging.
    hurry, result = threading.Event(), []
    worker = threading.Thread(target=lambda: result.append(terminate_tree(backend, 3600, hurry)))
    worker.start()
    worker.join(60)
    returned_early = not worker.is_alive()
    hurry.set()
    worker.join()
    assert returned_early
    killed = result[0]
    assert killed == 0
    assert backend.polls[-1] == []  # it stopped because the tree was empty
    assert backend.signals == [signal.SIGTERM, signal.SIGCONT]
    wait_all_dead(spawned)
    assert all(p.returncode == -signal.SIGTERM for p in spawned)


def test_terminate_tree_hurried_skips_the_grace_period(spawned):
    start_sleepers(spawned, 1)
    ignorer = start_term_ignorer(spawned)
    backend = ProcessListBackend(spawned)
    hurry = threading.Event()
    hurry.set()
    killed = terminate_tree(backend, grace=3600.0, hurry=hurry)
    assert len(backend.polls) == 1  # one look at the tree, then the SIGKILL: no grace
    assert killed >= 1
    assert backend.signals[-1] == signal.SIGKILL
    wait_all_dead(spawned)
    assert ignorer.returncode == -signal.SIGKILL
