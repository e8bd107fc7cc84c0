"""Facts about the host read from /proc and /sys: the thin I/O edge under tiers and monitor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tiered_run.units import parse_cpus

PSI_RESOURCES = ("cpu", "memory", "io")


@dataclass(frozen=True)
class Machine:
    """What tier defaults are computed from."""

    cpus: tuple[int, ...]
    memory_total: int


@dataclass(frozen=True)
class HostState:
    """One sample of host health: load, available memory, PSI `some avg10` per resource."""

    load1: float
    memory_available: int
    pressure: dict[str, float]

    @property
    def pressure_max(self) -> float | None:
        return max(self.pressure.values()) if self.pressure else None


def read_machine(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> Machine:
    online = (sys_root / "devices/system/cpu/online").read_text().strip()
    cpus = tuple(sorted(set(parse_cpus(online)) & os.sched_getaffinity(0)))
    return Machine(cpus=cpus, memory_total=_meminfo(proc_root)["MemTotal"])


def _meminfo(proc_root: Path) -> dict[str, int]:
    values = {}
    for line in (proc_root / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class HostReader:
    """Reads host load and pressure; keeps PSI file paths found once so each sample is cheap."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._proc = proc_root
        self._psi = {
            name: proc_root / "pressure" / name
            for name in PSI_RESOURCES
            if (proc_root / "pressure" / name).exists()
        }

    @property
    def has_pressure(self) -> bool:
        return bool(self._psi)

    def read(self) -> HostState:
        load1 = float((self._proc / "loadavg").read_text().split()[0])
        pressure = {}
        for name, path in self._psi.items():
            try:
                first = path.read_text().split("\n", 1)[0]
            except OSError:
                continue
            pressure[name] = parse_psi_avg10(first)
        return HostState(
            load1=load1,
            memory_available=_meminfo(self._proc).get("MemAvailable", 0),
            pressure=pressure,
        )


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
