"""CPU and I/O ceilings as a user would notice them, against the real kernel: a write ceiling
makes a writer take as long as it says and its bytes are counted exactly, a CPU quota halves
what a spinner gets, and the weights are in the run's own cgroup files. Skipped, with the
reason, where the kernel lacks the controller or the temporary directory is not on a disk."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import BACKEND_PROBLEMS, backend_params, run_cli

from tiered_run.backends import BACKENDS
from tiered_run.host.blockdev import device_of
from tiered_run.inputs.settings import SETTING

MiB = 1024**2
WRITE_MIB = 30  # at 10 MiB/s: 3 s, well above a sample's and a throttle slice's 0.1 s
CEILING_MIB_S = 10

# Writes MiB with O_DIRECT: the page cache is bypassed, so every byte reaches the disk
# before write() returns, and the cgroup counts it as the writer's. No fsync and no
# unlink: ext4 would write its journal blocks for them from the writer too (measured
# here: 12 KiB and 4 operations more for an fsync), and the count would no longer be
# the workload's bytes alone.
WRITER = """
import mmap, os, sys
path, mib = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
block = mmap.mmap(-1, 1 << 20)
block.write(b"x" * (1 << 20))
for _ in range(mib):
    os.write(fd, block)
os.close(fd)
"""

# Two processes spin for 4 s of wall time each: on two free CPUs, 2 CPUs' worth.
SPINNER = """
import os, time
end = time.monotonic() + 4
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""

# Prints the run's own cgroup files that hold the weights, quota and throttles.
CGROUP_FILES = """
import json
from pathlib import Path
from tiered_run.backends.cgroupfs import parse_proc_cgroup, system_mounts
own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
names = {
    "cpu": ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    "blkio": ("blkio.throttle.write_bps_device",),
    "": ("cpu.weight", "cpu.max", "io.max", "memory.low"),
}
found = {}
for mount in system_mounts():
    keys = [""] if mount.version == 2 else sorted(mount.controllers & set(names))
    for key in keys:
        group = mount.path / own.get(key, "/").lstrip("/")
        for name in names[key]:
            if (group / name).exists():
                found[name] = (group / name).read_text().strip()
print(json.dumps(found))
"""


def _disk_problem(path: Path) -> str | None:
    """Why a write ceiling cannot be tried on the disk holding `path`, if it cannot."""
    try:
        device = device_of(path)
    except ValueError as err:
        return str(err)
    probe = path / "direct-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
        os.close(fd)
    except OSError as err:
        return f"O_DIRECT on {device}: {err.strerror}"
    finally:
        probe.unlink(missing_ok=True)
    return None


def _backend_with(capability_value: str) -> str | None:
    """The first backend usable here whose probe offers the capability."""
    for name, cls in BACKENDS.items():
        if name == "plain" or BACKEND_PROBLEMS[name] is not None:
            continue
        if any(c.value == capability_value for c in cls.probe().capabilities):
            return name
    return None


def _write(tmp_path: Path, *options: str) -> tuple[dict, float]:
    """The report of a run of WRITER and the wall time it took, as tiered-run measured it."""
    result = run_cli(
        *options,
        "--io-device",
        str(tmp_path),
        "--",
        sys.executable,
        "-c",
        WRITER,
        str(tmp_path / "written"),
        str(WRITE_MIB),
        tmp_path=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "written").unlink()
    return result.report, result.report["wall_s"]


@pytest.mark.root
def test_a_write_ceiling_takes_as_long_as_it_says_and_counts_every_byte(tmp_path):
    backend = _backend_with("io-limit")
    if backend is None:
        pytest.skip("no backend here has an I/O throttle (io.max, blkio.throttle.*)")
    if (problem := _disk_problem(tmp_path)) is not None:
        pytest.skip(f"cannot throttle writes in {tmp_path}: {problem}")
    # The same writer without a ceiling: what the disk does by itself, on this machine now.
    free, free_s = _write(tmp_path, "--backend", backend)
    expected_s = WRITE_MIB / CEILING_MIB_S
    if free_s > expected_s / 2:
        pytest.skip(f"the disk writes {WRITE_MIB} MiB in {free_s:.1f} s: too slow to tell")
    held, held_s = _write(tmp_path, "--backend", backend, "--io-write-max", f"{CEILING_MIB_S}M")
    assert "io-limit" in held["enforced_by_kernel"]
    assert held["limits"]["io_write_max_bytes_per_s"] == CEILING_MIB_S * MiB
    # The throttle may run ahead by one slice (block/blk-throttle.c: 100 ms) and the first
    # megabyte; on a loaded machine the writer may be slower still, never much faster.
    assert held_s >= expected_s - 0.1 - 1 / CEILING_MIB_S, (held_s, free_s)
    assert held_s <= expected_s + free_s + 10, (held_s, free_s)
    for report in (free, held):
        assert report["io_source"] == "kernel"
        if report["io"]["write_bytes"] is None:
            # cgroup v1 before Linux 6.x counts only bios under a throttle rule: unknown
            # without one (never a false 0), exact with one
            assert report is free and report["backend"] in ("cgroup1", "systemd"), report
            continue
        assert report["io"]["write_bytes"] == WRITE_MIB * MiB  # O_DIRECT: exactly
        assert report["io"]["write_ops"] >= WRITE_MIB  # at least one per 1 MiB write
    rates = [p["io_write_bps"] for p in held["timeline"] if p["io_write_bps"] is not None]
    assert rates and max(rates) <= 3 * CEILING_MIB_S * MiB, rates
    print(f"\n{WRITE_MIB} MiB O_DIRECT: {free_s:.2f} s free, {held_s:.2f} s at 10 MiB/s")


@pytest.mark.root
def test_a_quota_of_half_a_cpu_holds_a_two_cpu_spinner_to_about_half(tmp_path):
    backend = _backend_with("cpu-quota")
    if backend is None:
        pytest.skip("no backend here has a CPU quota (cpu.max, cpu.cfs_quota_us)")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs for the spinner to want more than the quota")
    result = run_cli(
        "--backend", backend, "--cpu-quota", "50%", "--", sys.executable, "-c", SPINNER,
        tmp_path=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = result.report
    busy = report["cpu_s"] / report["wall_s"]
    # Unthrottled it would be near 2; the quota gives 0.5 per 100 ms period. A loaded
    # machine can only lower it, and start-up before the spin adds a little.
    assert 0.3 <= busy <= 0.65, report
    assert report["cpu_throttled_s"] > 1.0  # two spinners wanted four times the quota
    assert "cpu-quota" in report["enforced_by_kernel"]


@pytest.mark.root
@pytest.mark.parametrize("backend", backend_params("cgroup2", "cgroup1", "systemd"))
def test_the_weights_quota_and_throttle_are_in_the_runs_cgroup_files(backend, tmp_path):
    try:
        device = device_of(tmp_path)
    except ValueError as err:
        pytest.skip(str(err))
    result = run_cli(
        "--backend", backend, "--cpu-weight", "800", "--cpu-quota", "150%",
        "--io-write-max", "20M", "--io-device", str(tmp_path), "--memory-low", "64M",
        "--", sys.executable, "-c", CGROUP_FILES,
        tmp_path=tmp_path, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files, report = json.loads(result.stdout), result.report
    enforced, skipped = set(report["enforced_by_kernel"]), set(report["not_enforced"])
    checked = set()
    if "cpu-weight" in enforced:
        assert files.get("cpu.weight") == "800" or files.get("cpu.shares") == "8192", files
        checked.add("cpu_weight")
    if "cpu-quota" in enforced:
        v1 = (files.get("cpu.cfs_quota_us"), files.get("cpu.cfs_period_us"))
        assert files.get("cpu.max") == "150000 100000" or v1 == ("150000", "100000"), files
        checked.add("cpu_quota")
    if "io-limit" in enforced:
        line = files.get("io.max") or files.get("blkio.throttle.write_bps_device", "")
        assert line.startswith(f"{device.spec} ") and str(20 * MiB) in line, files
        checked.add("io_write_max")
    if "memory-low" in enforced:
        assert files.get("memory.low") == str(64 * MiB), files
        checked.add("memory_low")
    # Every ceiling asked for is either in its file or reported as not applied, and which
    # is which is what the backend's probe offers here (a controller-less cgroup2 on a
    # hybrid machine applies none of them, and says so).
    asked = {"cpu_weight", "cpu_quota", "io_write_max", "memory_low"}
    assert checked | skipped == asked and not checked & skipped
    probe = BACKENDS[backend].probe()
    if probe.usable:
        offered = {c.value for c in probe.capabilities}
        assert checked == {n for n in asked if SETTING[n].kernel.value in offered}, report
    else:  # cgroup2 here runs in a delegated scope of its own (guard_argv): all of them
        assert checked == asked, report


def test_without_cgroups_the_ceilings_are_reported_and_the_io_sampled(tmp_path):
    if (problem := _disk_problem(tmp_path)) is not None:
        pytest.skip(f"no disk I/O to sample in {tmp_path}: {problem}")
    # The writer sleeps after writing so that a sample sees its counters before it exits.
    writer = WRITER + "\nimport time; time.sleep(1)\n"
    result = run_cli(
        "--backend", "plain", "--cpu-weight", "200", "--io-write-max", "10M",
        "--io-device", str(tmp_path), "--interval", "0.1",
        "--", sys.executable, "-c", writer, str(tmp_path / "written"), "8",
        tmp_path=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = result.report
    assert report["not_enforced"] == ["cpu_weight", "io_write_max"]
    assert "cpu_weight, io_write_max: plain has no controller for them here" in result.stderr
    assert report["io_source"] == "sampled"
    assert report["io"]["write_bytes"] >= 8 * MiB  # a floor: what the last walk saw
    assert report["io"]["write_ops"] is None
    assert "I/O" in result.stderr and "sampled, at least" in result.stderr
