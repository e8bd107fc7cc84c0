"""The memory figures a report gives are what the workload really used, and say how they
were obtained: what calibrate turns into ceilings and what CI acts on."""

from __future__ import annotations

import subprocess

import pytest
from conftest import backend_params, run_cli
from workloads import PY

from tiered_run.inputs.units import parse_size

MiB = 1 << 20

# Touches 300 MiB at once and exits: over a 100 MiB ceiling between two samples.
QUICK_300_MIB = "x = bytearray(300 << 20); x[::4096] = b'1' * len(x[::4096])"


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1"))
def test_oom_kill_of_the_main_process_is_an_event(backend, tmp_path):
    result = run_cli(
        "--backend", backend, "--memory", "100M", "--", PY, "-c", QUICK_300_MIB, tmp_path=tmp_path
    )
    assert result.returncode == 122, result.stderr
    report = result.report
    assert report["outcome"] == "memory"
    assert "memory" in [event["kind"] for event in report["events"]]


@pytest.mark.parametrize("backend", backend_params("cgroup2", "plain"))
def test_sampled_backend_does_not_miss_a_peak_between_samples(backend, tmp_path):
    """`--backend cgroup2 --memory 100M` (no memory controller) exited 0 in 1 of 3 runs
    with a "9.8 MiB (sampled)" peak: the 300 MiB came and went between two samples."""
    result = run_cli(
        "--backend", backend, "--memory", "100M", "--interval", "5", "--",
        PY, "-c", QUICK_300_MIB, tmp_path=tmp_path,
    )  # fmt: skip
    report = result.report
    assert report["peak_memory_bytes"] > 100 * MiB  # caught by a sample, or by the floor
    assert report["outcome"] == "memory"
    assert result.returncode == 122


@pytest.mark.parametrize("backend", backend_params("cgroup2", "plain"))
def test_small_workload_is_not_charged_with_tiered_runs_own_memory(backend, tmp_path):
    """`--backend plain --memory 10M -- true` was a memory breach of "17.1 MiB": the peak
    RSS that wait4 reports counts the copy of tiered-run the child was before exec."""
    result = run_cli("--backend", backend, "--memory", "10M", "--", "true", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.report["outcome"] == "exited"


@pytest.fixture
def cold_file(tmp_path):
    """300 MiB written past the page cache, so reading it charges the reader's cgroup."""
    path = tmp_path / "cold.bin"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=300", "oflag=direct"],
        check=True,
        capture_output=True,
    )
    yield path
    path.unlink()


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1"))
def test_page_cache_is_not_counted_as_need(backend, cold_file, tmp_path):
    """`--memory 100M -- cat a-300MiB-file` peaks at the ceiling with page cache alone;
    calibrate recommended a ceiling from that instead of from what cat needs."""
    result = run_cli(
        "--backend", backend, "--memory", "100M", "--", "sh", "-c", f"cat {cold_file} >/dev/null",
        tmp_path=tmp_path,
    )  # fmt: skip
    report = result.report
    assert result.returncode == 0
    assert report["peak_memory_bytes"] > 64 * MiB  # the kernel's peak counts the cache
    assert report["peak_memory_unreclaimable_bytes"] < 32 * MiB
    assert report["memory_split"]["file_bytes"] > 32 * MiB
    calibrated = run_cli(
        "--backend", backend, "--memory-steps", "100M,400M", "--timeout", "60",
        "--", "sh", "-c", f"cat {cold_file} >/dev/null",
        tmp_path=tmp_path, command="calibrate",
    )  # fmt: skip
    recommended = calibrated.report["recommendation"]
    assert parse_size(recommended["memory"]) < 64 * MiB
    assert "cannot be reclaimed" in recommended["toml"]


SHARED_150_MIB = """
import os, time
buffer = bytearray(150 << 20)
buffer[::4096] = b"1" * len(buffer[::4096])
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        total = sum(buffer[::65536])  # read, never write: the pages stay shared
        time.sleep(1.5)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("backend", backend_params("cgroup1", "cgroup2", "plain"))
def test_copy_on_write_memory_counts_once(backend, tmp_path):
    """A 150 MiB buffer shared by 3 forked children was "629.7 MiB, above its 400 MiB
    ceiling" on the sampled backends, which summed RSS; cgroup1 passed it."""
    result = run_cli(
        "--backend", backend, "--memory", "400M", "--", PY, "-c", SHARED_150_MIB,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.report["peak_memory_bytes"] < 300 * MiB
    assert result.report["peak_memory_method"]
