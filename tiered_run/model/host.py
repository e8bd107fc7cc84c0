"""Records of the host: what tier defaults are computed from, and one sample of its health.

`host.machine` reads them from /proc and /sys; tiers, the settle gate, the breach policy
and the monitor only read the records, so they can be tested on synthetic machines.
"""

from __future__ import annotations

from dataclasses import dataclass


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
