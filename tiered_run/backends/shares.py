"""CPU and I/O shares, quotas and throttles in each hierarchy's files, and their counters.

Pure functions over values and file text, so both cgroup backends (and tests, on synthetic
text) share one translation. The scales are systemd's, which users know from unit files:
a weight of 1-10000 with 100 the default (CPUWeight=, IOWeight=) and a quota in percent of
one CPU (CPUQuota=). The conversions to cgroup v1 are systemd's too
(src/basic/cgroup-util.h: cgroup_cpu_weight_to_shares, cgroup_weight_io_to_blkio).
"""

from __future__ import annotations

from pathlib import Path

from tiered_run.host.blockdev import bfq_in_use
from tiered_run.model.spec import Limits
from tiered_run.model.usage import Capability, IoCounts

CFS_PERIOD_US = 100_000  # the kernel's default period (kernel/sched/core.c), systemd's too
_MIN_QUOTA_US = 1_000  # cpu.cfs_quota_us refuses less (kernel/sched/core.c: min_cfs_quota_period)
SHARES_DEFAULT = 1024  # cpu.shares that CPUWeight=100 stands for
BLKIO_DEFAULT = 500  # blkio.weight that IOWeight=100 stands for
BLKIO_MIN, BLKIO_MAX = 10, 1000  # block/blk-cgroup.h: CGROUP_WEIGHT_MIN/MAX of v1 blkio
BFQ_MIN, BFQ_MAX = 1, 1000  # block/bfq-iosched.h: BFQ_MIN_WEIGHT, BFQ_MAX_WEIGHT


def cpu_shares(weight: int) -> int:
    """cgroup v1 cpu.shares for a weight: 100 is 1024 (kernel/sched/sched.h: 2..262144)."""
    return min(262_144, max(2, round(weight * SHARES_DEFAULT / 100)))


def quota_us(percent: float, period_us: int = CFS_PERIOD_US) -> int:
    """CPU time per period for a quota in percent of one CPU (`400` = four CPUs' worth)."""
    return max(_MIN_QUOTA_US, round(percent / 100 * period_us))


def cpu_max(percent: float) -> str:
    """cgroup v2 cpu.max: `QUOTA PERIOD` in microseconds."""
    return f"{quota_us(percent)} {CFS_PERIOD_US}"


def blkio_weight(weight: int) -> int:
    """cgroup v1 blkio.weight for an I/O weight: 100 is 500, kept within 10-1000."""
    return min(BLKIO_MAX, max(BLKIO_MIN, round(weight * BLKIO_DEFAULT / 100)))


def bfq_weight(weight: int) -> int:
    """The bfq scheduler's weight (io.bfq.weight, blkio.bfq.weight), 1-1000: systemd hands
    it the v1 blkio figure."""
    return min(BFQ_MAX, max(BFQ_MIN, blkio_weight(weight)))


def io_weight_file(group: Path, mount: Path) -> str | None:
    """io.weight where io.cost is switched on for some disk (`enable=1` in the mount's
    io.cost.qos, block/blk-iocost.c: until then nothing reads the weight), else
    io.bfq.weight where some disk is scheduled by bfq (block/bfq-cgroup.c); None else."""
    if (group / "io.weight").exists() and iocost_enabled(mount):
        return "io.weight"
    if (group / "io.bfq.weight").exists() and bfq_in_use():
        return "io.bfq.weight"
    return None


def optional_capabilities(dirs: dict[str, Path]) -> frozenset[Capability]:
    """What the cpu and blkio groups of a run (or, before one exists, their parents) hold,
    told by their files: cfs quota needs CONFIG_CFS_BANDWIDTH, the throttle files
    CONFIG_BLK_DEV_THROTTLING, and a weight blkio.weight or bfq's blkio.bfq.weight."""
    caps = set()
    cpu, blkio = dirs.get("cpu"), dirs.get("blkio")
    if cpu is not None and (cpu / "cpu.shares").exists():
        caps.add(Capability.CPU_WEIGHT)
    if cpu is not None and (cpu / "cpu.cfs_quota_us").exists():
        caps.add(Capability.CPU_QUOTA)
    if blkio is not None and (blkio / "blkio.throttle.write_bps_device").exists():
        caps |= {Capability.IO_LIMIT, Capability.IO_STATS}
    if blkio is not None and blkio_weight_file(blkio) is not None:
        caps.add(Capability.IO_WEIGHT)
    return frozenset(caps)


def blkio_weight_file(group: Path) -> str | None:
    """blkio.weight (CFQ, gone in Linux 5.0), else bfq's blkio.bfq.weight where some disk
    is scheduled by bfq (block/bfq-cgroup.c): elsewhere the file is there but no
    scheduler reads it."""
    if (group / "blkio.weight").exists():
        return "blkio.weight"
    if (group / "blkio.bfq.weight").exists() and bfq_in_use():
        return "blkio.bfq.weight"
    return None


def iocost_enabled(mount: Path) -> bool:
    try:
        text = (mount / "io.cost.qos").read_text()
    except OSError:
        return False
    return any("enable=1" in line.split() for line in text.splitlines())


def io_max_line(limits: Limits) -> str | None:
    """cgroup v2 io.max for the run's device: `MAJ:MIN rbps=N wbps=N riops=N wiops=N`
    (block/blk-throttle.c: tg_set_limit), or None where no throttle is set."""
    if limits.io_device is None or not limits.io_max:
        return None
    pairs = " ".join(f"{key}={value}" for key, value in limits.io_max.items())
    return f"{limits.io_device.spec} {pairs}"


# systemd's property for each io.max key (systemd.resource-control(5)).
IO_PROPERTIES = {
    "rbps": "IOReadBandwidthMax",
    "wbps": "IOWriteBandwidthMax",
    "riops": "IOReadIOPSMax",
    "wiops": "IOWriteIOPSMax",
}

# cgroup v1's throttle files, one per io.max key (block/blk-throttle.c: throtl_legacy_files).
V1_THROTTLE_FILES = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}


def v1_throttles(limits: Limits) -> list[tuple[str, str]]:
    """(file, `MAJ:MIN VALUE`) for each throttle that is set."""
    if limits.io_device is None:
        return []
    spec = limits.io_device.spec
    return [(V1_THROTTLE_FILES[key], f"{spec} {value}") for key, value in limits.io_max.items()]


# -- counters ------------------------------------------------------------------------------


def parse_io_stat(text: str | None) -> IoCounts | None:
    """cgroup v2 io.stat, summed over devices: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N
    dbytes=N dios=N` per line (block/blk-cgroup.c: blkcg_print_one_stat). An empty file is
    a cgroup that has done no I/O yet."""
    if text is None:
        return None
    totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    for line in text.splitlines():
        for pair in line.split()[1:]:
            key, _, value = pair.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return IoCounts(totals["rbytes"], totals["wbytes"], totals["rios"], totals["wios"])


def _v1_sums(text: str) -> dict[str, int]:
    """Read and Write summed over devices from a v1 blkio recursive stat file
    (`MAJ:MIN Read N` per line, then a `Total N` line, which is skipped)."""
    sums = {"Read": 0, "Write": 0}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[1] in sums and words[2].isdigit():
            sums[words[1]] += int(words[2])
    return sums


def parse_blkio(service_bytes: str | None, serviced: str | None) -> IoCounts | None:
    """cgroup v1 blkio.throttle.io_service_bytes_recursive and io_serviced_recursive: the
    subtree's bytes and operations as the throttle layer saw them (every bio, throttled or
    not; block/blk-cgroup-rwstat.c)."""
    if service_bytes is None:
        return None
    moved = _v1_sums(service_bytes)
    ops = _v1_sums(serviced) if serviced is not None else None
    return IoCounts(
        moved["Read"],
        moved["Write"],
        None if ops is None else ops["Read"],
        None if ops is None else ops["Write"],
    )


def blkio_known(io: IoCounts, limits: Limits) -> IoCounts:
    """The v1 counters of a direction that can be told. Before Linux 6.x's rework of
    blk-throttle (block/blk-throttle.c: blk_throtl_bio returns early where the group has no
    rule for the bio's direction) only bios of a direction with a throttle rule are
    counted: a 0 there without a rule is not known to be 0, and is None instead."""
    rules = limits.io_max if limits.io_device is not None else {}
    read = "rbps" in rules or "riops" in rules or bool(io.read_bytes or io.read_ops)
    write = "wbps" in rules or "wiops" in rules or bool(io.write_bytes or io.write_ops)
    return IoCounts(
        io.read_bytes if read else None,
        io.write_bytes if write else None,
        io.read_ops if read else None,
        io.write_ops if write else None,
    )


def psi_total_s(text: str | None) -> float | None:
    """Seconds some task stalled, from a PSI file's `some ... total=USEC` line
    (kernel/sched/psi.c: psi_show); None where it cannot be read (PSI off at boot)."""
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                if key == "total" and value.isdigit():
                    return int(value) / 1e6
    return None
