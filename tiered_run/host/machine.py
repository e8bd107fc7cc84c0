"""Facts about the host read from /proc and /sys: the thin I/O edge under tiers and monitor.

The records it returns (`Machine`, `HostState`) live in `model.host`, so that what only
reads them never imports this.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiered_run.host.heldfiles import HeldFiles
from tiered_run.inputs.units import parse_cpus
from tiered_run.model.host import HostState, Machine

PSI_RESOURCES = ("cpu", "memory", "io")


def read_machine(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> Machine:
    online = (sys_root / "devices/system/cpu/online").read_text().strip()
    cpus = tuple(sorted(set(parse_cpus(online)) & os.sched_getaffinity(0)))
    return Machine(cpus=cpus, memory_total=_meminfo(proc_root)["MemTotal"])


def _meminfo(proc_root: Path) -> dict[str, int]:
    return _parse_meminfo((proc_root / "meminfo").read_text())


def _parse_meminfo(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
            if len(values) == 2:
                break
    return values


class HostReader:
    """Reads host load, available memory and pressure from files held open (see HeldFiles),
    so that sampling the host costs the monitor a few system calls."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._root = proc_root
        self._psi = tuple(n for n in PSI_RESOURCES if (proc_root / "pressure" / n).exists())
        self._proc = HeldFiles(proc_root, ("loadavg", "meminfo"))
        self._pressure = HeldFiles(proc_root / "pressure", self._psi)

    @property
    def has_pressure(self) -> bool:
        return bool(self._psi)

    def close(self) -> None:
        self._proc.close()
        self._pressure.close()

    def read(self) -> HostState:
        load1 = float((self._proc.text("loadavg") or "0").split()[0])
        pressure = {}
        for name in self._psi:
            text = self._pressure.text(name)
            if text is not None:
                pressure[name] = parse_psi_avg10(text.split("\n", 1)[0])
        return HostState(
            load1=load1,
            memory_available=_parse_meminfo(self._proc.text("meminfo") or "").get(
                "MemAvailable", 0
            ),
            pressure=pressure,
        )

    def cpu_busy(self) -> dict[int, tuple[int, int]]:
        """Per-CPU (busy, total) jiffies now; see `read_cpu_busy`."""
        return read_cpu_busy(self._root)


def parse_psi_avg10(line: str) -> float:
    """`some avg10=1.23 avg60=... total=...` -> 1.23."""
    for field_ in line.split():
        if field_.startswith("avg10="):
            return float(field_[6:])
    raise ValueError(f"no avg10 in PSI line {line!r}")


def read_cpu_busy(proc_root: Path = Path("/proc")) -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat, to watch protected CPUs."""
    result = {}
    with open(proc_root / "stat") as stat:
        for line in stat:
            if not line.startswith("cpu") or line.startswith("cpu "):
                if result:
                    break
                continue
            name, *fields = line.split()
            values = [int(v) for v in fields[:8]]
            idle = values[3] + values[4]
            result[int(name[3:])] = (sum(values) - idle, sum(values))
    return result


def own_resident_bytes() -> int:
    """tiered-run's own resident set now (/proc/self/statm, in pages): what a process forked
    from it holds before it execs the workload."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
