"""CPU and I/O shares, quotas and throttles: their files on synthetic trees, their counters on
synthetic text, the disk a path lies on in a fake sysfs, and the tree's I/O from walks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import Mount
from tiered_run.backends.proctree import IoTally
from tiered_run.backends.shares import (
    blkio_weight,
    cpu_max,
    cpu_shares,
    io_max_line,
    parse_blkio,
    parse_io_stat,
    psi_total_s,
    quota_us,
    v1_throttles,
)
from tiered_run.engine.accounting import Peaks, io_rates
from tiered_run.host.blockdev import disk_of
from tiered_run.model.spec import BlockDevice, Limits
from tiered_run.model.usage import Capability, IoCounts, Stalls, Usage
from tiered_run.policy.breaches import not_enforced

MiB = 1024**2
SDA = BlockDevice(8, 0, "sda")
SHARED = Limits(
    cpus=(0,),
    cpu_weight=800,
    cpu_quota=50.0,
    io_weight=800,
    io_write_max=10 * MiB,
    io_read_iops_max=500,
    io_device=SDA,
    memory_low=2048 * MiB,
)


def test_systemds_scales_map_onto_the_kernels():
    assert cpu_shares(100) == 1024 and cpu_shares(800) == 8192 and cpu_shares(1) == 10
    assert quota_us(50) == 50_000 and quota_us(400) == 400_000 and quota_us(0.5) == 1_000
    assert cpu_max(50) == "50000 100000"
    assert blkio_weight(100) == 500 and blkio_weight(10000) == 1000 and blkio_weight(1) == 10


def test_throttles_name_the_disk_in_each_hierarchys_format():
    assert io_max_line(SHARED) == "8:0 wbps=10485760 riops=500"
    assert v1_throttles(SHARED) == [
        ("blkio.throttle.write_bps_device", "8:0 10485760"),
        ("blkio.throttle.read_iops_device", "8:0 500"),
    ]
    assert io_max_line(Limits(cpus=(0,), io_device=SDA)) is None  # a disk, but no throttle


def test_counters_are_summed_over_disks():
    stat = (
        "8:0 rbytes=4096 wbytes=1048576 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:16 rbytes=10 wbytes=0 rios=3 wios=0\n"
    )
    assert parse_io_stat(stat) == IoCounts(4106, 1048576, 4, 2)
    assert parse_io_stat("") == IoCounts(0, 0, 0, 0)  # no I/O yet
    assert parse_io_stat(None) is None  # no io.stat: nothing is known
    moved = "8:0 Read 4096\n8:0 Write 31457280\n8:0 Sync 0\n8:0 Total 31461376\nTotal 31461376\n"
    ops = "8:0 Read 1\n8:0 Write 60\n8:0 Total 61\nTotal 61\n"
    assert parse_blkio(moved, ops) == IoCounts(4096, 31457280, 1, 60)
    assert parse_blkio("Total 0\n", "Total 0\n") == IoCounts(0, 0, 0, 0)


def test_v1_counters_without_a_rule_are_unknown_unless_they_counted():
    from tiered_run.backends.shares import blkio_known

    write_rule = Limits(cpus=(0,), io_write_max=MiB, io_device=SDA)
    # an older kernel: reads uncounted (no read rule), writes counted under the rule
    assert blkio_known(IoCounts(0, 5 * MiB, 0, 5), write_rule) == IoCounts(None, 5 * MiB, None, 5)
    # a newer kernel counts every bio: what it counted is known, rule or not
    assert blkio_known(IoCounts(MiB, 0, 1, 0), Limits(cpus=(0,))) == IoCounts(MiB, None, 1, None)
    assert blkio_known(IoCounts(0, 0, 0, 0), write_rule) == IoCounts(None, 0, None, 0)


def test_stall_time_is_psis_some_total():
    text = "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\nfull avg10=0 total=7\n"
    assert psi_total_s(text) == 2.5
    assert psi_total_s("") is None and psi_total_s(None) is None


def test_a_partition_stands_for_its_disk(tmp_path: Path):
    disk = tmp_path / "devices" / "block" / "sda"
    (disk / "sda1").mkdir(parents=True)
    (disk / "dev").write_text("8:0\n")
    (disk / "sda1" / "partition").write_text("1\n")
    links = tmp_path / "dev" / "block"
    links.mkdir(parents=True)
    (links / "8:1").symlink_to(disk / "sda1")
    (links / "8:0").symlink_to(disk)
    assert disk_of(8, 1, "/data", tmp_path) == SDA
    assert disk_of(8, 0, "/dev/sda", tmp_path) == SDA
    with pytest.raises(ValueError, match="/dev/shm is not on a block device"):
        disk_of(0, 25, "/dev/shm", tmp_path)


def test_a_walked_trees_io_keeps_what_exited_processes_did():
    tally = IoTally()
    assert tally.add({(10, 1.0): (100, 200), (11, 1.0): (0, 50)}) == IoCounts(100, 250)
    # 11 exited: its last figures stay; a new process under a reused pid is another one
    assert tally.add({(10, 1.0): (150, 200), (11, 9.0): (5, 5)}) == IoCounts(155, 255)


def test_peaks_keep_the_latest_counters_and_rates_come_from_two_samples():
    first = Peaks().with_usage(Usage(io=IoCounts(0, MiB, 0, 2), cpu_throttled_s=0.1))
    second = first.with_usage(
        Usage(io=IoCounts(0, 11 * MiB, 0, 22), cpu_throttled_s=0.6, stalls=Stalls(0, 0, 1.5))
    )
    assert second.io == IoCounts(0, 11 * MiB, 0, 22)
    assert second.cpu_throttled_s == 0.6 and second.stalls == Stalls(0, 0, 1.5)
    assert io_rates(first.io, second.io, 1.0) == (0, 10 * MiB)
    # a final reading of a cgroup removed under us undoes nothing
    assert second.with_usage(Usage(io=IoCounts())).io == second.io
    assert io_rates(None, second.io, 1.0) == (None, None)


# -- the cgroup v2 files, on a fake tree ------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    parent = tmp_path / "work.slice"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "cpuset.mems.effective").write_text("0\n")
    return parent


def test_v2_writes_weights_quota_throttles_and_protection(fake: Path):
    backend = Cgroup2Backend(Mount(fake.parent, 2, frozenset()), fake)
    backend.create("1-a", SHARED)
    run = fake / "tiered-run-1-a"
    assert "+cpu +io" in (fake / "cgroup.subtree_control").read_text()
    assert (run / "cpu.weight").read_text() == "800"
    assert (run / "cpu.max").read_text() == "50000 100000"
    assert (run / "io.max").read_text() == "8:0 wbps=10485760 riops=500"
    assert (run / "memory.low").read_text() == str(2048 * MiB)
    assert not (run / "io.weight").exists()  # no io.weight file: not written, and reported
    assert not_enforced(SHARED, backend.capabilities) == ("io_weight",)
    assert {Capability.IO_LIMIT, Capability.IO_STATS} <= backend.capabilities


def test_an_io_weight_file_counts_only_where_something_reads_it(tmp_path: Path, monkeypatch):
    import tiered_run.backends.shares as shares

    group = tmp_path / "run"
    group.mkdir()
    (group / "io.weight").write_text("default 100\n")
    (group / "io.bfq.weight").write_text("default 100\n")
    monkeypatch.setattr(shares, "bfq_in_use", lambda: False)
    assert shares.io_weight_file(group, tmp_path) is None  # io.cost off, no disk on bfq
    monkeypatch.setattr(shares, "bfq_in_use", lambda: True)
    assert shares.io_weight_file(group, tmp_path) == "io.bfq.weight"
    (tmp_path / "io.cost.qos").write_text("8:0 enable=1 ctrl=auto rpct=0.00\n")
    assert shares.io_weight_file(group, tmp_path) == "io.weight"


def test_io_ceilings_default_to_the_working_directorys_disk(tmp_path: Path):
    from tiered_run.errors import UsageError
    from tiered_run.host.blockdev import device_of
    from tiered_run.host.machine import Machine
    from tiered_run.inputs.config import parse_config
    from tiered_run.inputs.plan import RunOptions, plan_run

    machine = Machine(cpus=(0, 1), memory_total=8 << 30)
    config = parse_config({}, machine, "c.toml")
    try:
        disk = device_of(tmp_path)
    except ValueError as err:
        pytest.skip(f"the temporary directory is on no disk: {err}")
    options = RunOptions(io_write_max=10 * MiB, cwd=tmp_path)
    assert plan_run(("true",), options, config, machine).limits.io_device == disk
    unset = plan_run(("true",), RunOptions(cwd=tmp_path), config, machine).limits
    assert unset.io_device is None  # no throttle, no disk
    nowhere = Path("/proc")  # procfs: no block device under it
    with pytest.raises(UsageError, match=r"working directory's disk: /proc is not on a block"):
        plan_run(("true",), RunOptions(io_read_max=MiB, cwd=nowhere), config, machine)
