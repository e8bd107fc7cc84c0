"""The kernel's news of a run, for real: an OOM kill in the run makes the monitor act at
once, however long it sleeps between samples."""

from __future__ import annotations

import pytest
from conftest import backend_params, run_cli
from workloads import PY

from tiered_run.backends import BACKENDS
from tiered_run.model.usage import Capability

# A child touches 50 MiB at a time up to 2 GiB (killed at the ceiling); the main process
# would sleep on for 30 s and exit 0 by itself.
CHILD_HOG_MAIN_SLEEPS = """
import os, time
if os.fork() == 0:
    chunks = []
    for _ in range(40):
        chunks.append(b"\\x01" * (50 << 20))
        time.sleep(0.05)
    os._exit(0)
time.sleep(30)
"""


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1", "cgroup2"))
def test_an_oom_kill_ends_the_run_at_once_not_at_the_next_sample(backend, tmp_path):
    """With a 60 s interval, only the kernel's news can tell the monitor of the OOM kill
    before the main process ends by itself: the run is ended instead of running its 30 s
    and exiting 0."""
    if Capability.MEMORY_LIMIT not in BACKENDS[backend].offered():
        pytest.skip(f"{backend}: the monitor holds the memory ceiling here, not the kernel")
    result = run_cli(
        "--backend", backend, "--memory", "100M", "--interval", "60", "--timeout", "50",
        "--", PY, "-c", CHILD_HOG_MAIN_SLEEPS,
        tmp_path=tmp_path,
    )  # fmt: skip
    report = result.report
    assert result.returncode == 122, result.stderr
    assert report["outcome"] == "memory"
    # Ended, not exited by itself: by the run on the news (SIGTERM), or on cgroup v2 by the
    # kernel with the OOM kill itself (memory.oom.group kills the whole group).
    assert report["signal_name"] in ("SIGTERM", "SIGKILL"), report
