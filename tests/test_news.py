"""The kernel's news of a run, for real: an OOM kill in the run's memcg makes the news
descriptors ready, so the monitor wakes at once however long it sleeps between samples."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import backend_params
from workloads import MEMORY_HOG, PY

from tiered_run.backends import BACKENDS
from tiered_run.backends.ownership import new_run_id
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability

MiB = 1 << 20


@pytest.mark.parametrize("name", backend_params("cgroup1", "cgroup2"))
def test_an_oom_kill_in_the_run_is_news(name, spawned):
    backend = BACKENDS[name]()
    backend.create(new_run_id(), Limits(cpus=(0,), memory=64 * MiB))
    news = None
    try:
        if Capability.MEMORY_LIMIT not in backend.capabilities:
            pytest.skip(f"{name}: no memory controller here, so no OOM kill to announce")
        news = backend.news()
        assert news, "a memory controller, and no news of its OOM kills"
        stop_read, stop_write = os.pipe()
        said: list[bool] = []
        listener = threading.Thread(target=lambda: said.append(news.wait(stop_read)))
        listener.start()
        # Touches 50 MiB at a time up to 2 GiB: killed at the 64 MiB ceiling.
        hog = spawned.popen([PY, "-c", MEMORY_HOG], preexec_fn=backend.attach)
        assert hog.wait(timeout=60) == -9
        listener.join(timeout=30)
        os.write(stop_write, b"x")  # frees the listener should the news never have come
        listener.join()
        assert said == [True]
        # Taken: the next wait blocks until new news (here: the stop).
        assert news.wait(stop_read) is False
        for fd in (stop_read, stop_write):
            os.close(fd)
    finally:
        if news is not None:
            news.close()
        backend.remove()
