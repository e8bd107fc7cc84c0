"""The memory figures a report gives are what the workload really used, and say how they
were obtained: what calibrate turns into ceilings and what CI acts on."""

from __future__ import annotations

import pytest
from conftest import backend_params, run_cli
from workloads import PY

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
