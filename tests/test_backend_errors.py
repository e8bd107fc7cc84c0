"""Backend errors carry the file, the operation and the errno, not only a sentence."""

from __future__ import annotations

import errno
import os

import pytest

from tiered_run.backends.base import CleanupError
from tiered_run.backends.cgroupfs import CgroupDir
from tiered_run.backends.ownership import claim
from tiered_run.errors import BackendError


def test_a_failed_write_names_the_file_the_operation_and_the_errno(tmp_path):
    with pytest.raises(BackendError) as caught:
        CgroupDir(tmp_path / "gone").write("memory.max", 100)
    err = caught.value
    assert (err.path, err.operation, err.errno) == (
        str(tmp_path / "gone" / "memory.max"),
        "write",
        errno.ENOENT,
    )
    assert str(err).startswith(f"cannot write 100 to {tmp_path / 'gone' / 'memory.max'}: ")


def test_a_run_directory_that_exists_already_is_refused_with_eexist(tmp_path):
    taken = tmp_path / f"tiered-run-p{os.getpid()}-000001"
    taken.mkdir()
    with pytest.raises(BackendError, match="already exists") as caught:
        claim(taken)
    assert (caught.value.path, caught.value.operation) == (str(taken), "create")
    assert caught.value.errno == errno.EEXIST


def test_a_busy_cgroup_is_a_cleanup_error_with_its_data(tmp_path):
    busy = tmp_path / "busy"
    (busy / "child").mkdir(parents=True)  # a plain directory with an entry: ENOTEMPTY
    with pytest.raises(CleanupError) as caught:
        CgroupDir(busy).rmdir()
    err = caught.value
    assert (err.path, err.operation, err.errno) == (str(busy), "remove", errno.ENOTEMPTY)
    assert str(err) == f"cannot remove cgroup {busy}: {err.detail}"
