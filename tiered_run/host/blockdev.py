"""Which disk a path lies on, as the kernel's I/O throttles name it.

cgroup v2 io.max and v1 blkio.throttle.* take `MAJ:MIN` of a whole disk: the kernel
refuses a partition (ENODEV), and a filesystem without a block device (tmpfs, overlay,
NFS: st_dev with major 0) has nothing to throttle. A path therefore stands for the disk its
filesystem is on: /sys/dev/block/MAJ:MIN is a link into /sys/block, where a partition's
directory (it has a `partition` file) sits inside its disk's, whose `dev` file gives the
disk's number. `sys_root` lets tests point at a fake sysfs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tiered_run.model.spec import BlockDevice


def device_of(path: Path | str, sys_root: Path = Path("/sys")) -> BlockDevice:
    """The whole disk holding `path` (or the disk a block device node names). ValueError,
    without naming the setting, where there is none."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from err
    number = info.st_rdev if stat.S_ISBLK(info.st_mode) else info.st_dev
    return disk_of(os.major(number), os.minor(number), str(path), sys_root)


def disk_of(major: int, minor: int, shown: str, sys_root: Path = Path("/sys")) -> BlockDevice:
    """The disk of device `major:minor` (itself, or the disk a partition is part of)."""
    link = sys_root / "dev" / "block" / f"{major}:{minor}"
    if major == 0 or not link.exists():
        raise ValueError(
            f"{shown} is not on a block device (tmpfs, overlay or a network filesystem); "
            "give a path on a disk, or the disk itself, e.g. /dev/sda"
        )
    directory = link.resolve()
    if (directory / "partition").exists():
        directory = directory.parent
        major, minor = (int(part) for part in (directory / "dev").read_text().split(":"))
    return BlockDevice(major, minor, directory.name)


def bfq_in_use(sys_root: Path = Path("/sys")) -> bool:
    """Whether some disk is scheduled by bfq (`[bfq]` in /sys/block/*/queue/scheduler): only
    bfq reads the bfq weight files a cgroup has whenever the module is loaded."""
    for scheduler in (sys_root / "block").glob("*/queue/scheduler"):
        try:
            if "[bfq]" in scheduler.read_text():
                return True
        except OSError:
            continue
    return False
