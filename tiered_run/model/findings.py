"""What `doctor` concludes: findings about the machine, and what guards each ceiling of a
tier. One result (`Diagnosis`), rendered as a table for people and as JSON for machines.

Each finding says what was found, what it means for a guarded run, and what to do about
it (a command, a config snippet or a kernel parameter, with what it really does). Its
`id` is stable, for scripts: `cgroups.mode`, `systemd.session-scope`, `cpus.isolcpus`...
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# 1: findings (id, area, severity, summary, consequence, remedy), machine, tier.
# 2: machine.guards has the CPU and I/O ceilings (cpu_quota, io_*, memory_low).
SCHEMA_VERSION = 2


class Severity(enum.Enum):
    """How much a finding matters to a guarded run, from fine to in the way."""

    OK = "ok"  # works as a guarded run needs it
    NOTE = "note"  # worth knowing; nothing to do
    WARNING = "warning"  # a run works, but less safely than it could
    PROBLEM = "problem"  # something a run needs is missing, or a trap is set

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


@dataclass(frozen=True)
class Finding:
    id: str
    area: str  # cgroups, backend, systemd, kernel, cpus, memory, containers, tier
    severity: Severity
    summary: str  # what was found
    consequence: str = ""  # what it means for a run
    remedy: str = ""  # what to do about it

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "area": self.area,
            "severity": self.severity.value,
            "summary": self.summary,
            "consequence": self.consequence,
            "remedy": self.remedy,
        }


class Guard(enum.Enum):
    """What holds one ceiling of a run."""

    KERNEL = "kernel"  # a cgroup controller: the tree cannot get past it
    MONITOR = "monitor"  # tiered-run's monitor samples the tree and ends the run
    AFFINITY = "affinity"  # CPU affinity set before exec, which the tree may change
    TIERED_RUN = "tiered-run"  # by design tiered-run's own (the timeout's timer, nice)
    NOT_APPLIED = "not-applied"  # asked for, but nothing here applies it

    @property
    def guarded(self) -> bool:
        return self in (Guard.KERNEL, Guard.TIERED_RUN)


@dataclass(frozen=True)
class CeilingCheck:
    """One ceiling of a tier: its value as a user would type it, and what holds it here."""

    name: str  # the setting (memory_high)
    key: str  # its key in a tier ([tiers.NAME] memory_high)
    value: object  # as the report's limits hold it: bytes, seconds, a list of CPUs
    shown: str  # as a user would write it: 20.0 GiB, 15 min, 4-19
    guard: Guard
    how: str  # in words: `the kernel (cgroup v1 memory controller)`
    trouble: str = ""  # what undoes it even so (an enclosing ceiling with its OOM killer off)

    @property
    def guarded(self) -> bool:
        return self.guard.guarded and not self.trouble

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "key": self.key,
            "value": list(self.value) if isinstance(self.value, tuple) else self.value,
            "shown": self.shown,
            "guard": self.guard.value,
            "how": self.how,
            "trouble": self.trouble or None,
            "guarded": self.guarded,
        }


@dataclass(frozen=True)
class TierCheck:
    """A tier as it resolves on this machine: its ceilings and what would stop a run."""

    name: str
    source: str
    default: bool
    cpus: tuple[int, ...] = ()
    ceilings: tuple[CeilingCheck, ...] = ()
    blockers: tuple[str, ...] = ()  # each would stop a run in it from starting
    notes: tuple[str, ...] = ()  # it starts, but the user should know

    @property
    def guarded(self) -> bool:
        """Every ceiling it sets is held (by the kernel, or by design by tiered-run), and
        nothing stops a run in it from starting."""
        return not self.blockers and all(ceiling.guarded for ceiling in self.ceilings)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "default": self.default,
            "cpus": list(self.cpus),
            "guarded": self.guarded,
            "ceilings": [ceiling.to_dict() for ceiling in self.ceilings],
            "blockers": list(self.blockers),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Diagnosis:
    """Everything `doctor` says, and the exit code it ends with."""

    findings: tuple[Finding, ...]
    tier: TierCheck | None  # None where no tier could be read (a config that is refused)
    machine: dict[str, object] = field(default_factory=dict)  # the headline facts

    @property
    def exit_code(self) -> int:
        """0: the tier can be guarded with every ceiling it sets; 1: something is only
        monitored, not applied, or stops a run from starting."""
        return 0 if self.tier is not None and self.tier.guarded else 1

    def to_dict(self) -> dict[str, object]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "doctor",
            "exit_code": self.exit_code,
            "machine": self.machine,
            "tier": self.tier.to_dict() if self.tier is not None else None,
            "findings": [finding.to_dict() for finding in self.findings],
        }
