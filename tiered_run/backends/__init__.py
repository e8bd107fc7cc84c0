"""The backends, and the one place that picks which to use and says why.

Each backend probes this machine once per process (`Backend.probe`: usable, why, the
capabilities a run would get). `--backend auto` walks `AUTO_ORDER`: first a backend with
which the kernel holds every hard ceiling, else one that still contains the tree, and the
choice is made once per process (a ladder's steps share it); each run gets a backend
instance of its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tiered_run.backends.base import Backend, Probe
from tiered_run.backends.cgroup1 import Cgroup1Backend
from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import PREFIX, own_cgroups
from tiered_run.backends.plain import PlainBackend
from tiered_run.backends.systemd import SystemdBackend
from tiered_run.errors import UsageError
from tiered_run.model.usage import CONTAINING

BACKENDS: dict[str, type[Backend]] = {
    "systemd": SystemdBackend,
    "cgroup2": Cgroup2Backend,
    "cgroup1": Cgroup1Backend,
    "plain": PlainBackend,
}
CHOICES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class Step:
    """One place in the order of `auto`: a backend, and whether it is taken only where the
    kernel holds every hard ceiling (CPUs, memory, tasks). A fallback's reason names what
    the cgroup backends before it lacked; `fallback_reason` replaces its probe's reason
    there. `elsewhere`: the run's cgroup is not below tiered-run's own (a systemd scope),
    which a run nested in another must not leave."""

    backend: type[Backend]
    containing: bool
    fallback_reason: str | None = None
    elsewhere: bool = False


# systemd where it is init and we are root (a workload started from a login session then
# lands in its tier's slice), else below our own cgroup: cgroup2 with its controllers, else
# cgroup1, else a controller-less cgroup2 (placement, kill and freeze exact; memory and
# tasks enforced by the monitor), else plain.
AUTO_ORDER = (
    Step(SystemdBackend, containing=True, elsewhere=True),
    Step(Cgroup2Backend, containing=True),
    Step(Cgroup1Backend, containing=True),
    Step(Cgroup2Backend, containing=False),
    Step(PlainBackend, containing=False, fallback_reason="no usable cgroup"),
)


@dataclass(frozen=True)
class Choice:
    """A backend class and why: what it offers (or, for a fallback, what the others lacked),
    then how it came to be chosen (`--backend`, a run nested in another)."""

    backend: type[Backend]
    reason: str
    qualifiers: tuple[str, ...] = ()


def select_backend(requested: str = "auto", tier: str | None = None) -> tuple[Backend, str]:
    """A new backend for one run, and the reason it was chosen (for every report)."""
    choice = choose(requested)
    cls = choice.backend
    backend = SystemdBackend(tier) if cls is SystemdBackend else cls()
    return backend, "; ".join((backend.describe(choice.reason), *choice.qualifiers))


@functools.cache
def choose(requested: str = "auto") -> Choice:
    """The backend to use, decided once per process (a ladder's steps share it)."""
    if requested == "auto":
        return _auto()
    cls = BACKENDS[requested]
    probe = cls.probe()
    if not probe.usable:
        raise UsageError(
            f"--backend {requested} cannot work here: {probe.reason}; try --backend auto",
            key="--backend",
        )
    return Choice(cls, probe.reason, ("chosen with --backend",))


def _auto() -> Choice:
    enclosing = enclosing_run()
    for index, step in enumerate(AUTO_ORDER):
        cls = step.backend
        if step.elsewhere and enclosing is not None:
            continue  # a scope elsewhere would take the workload out of the enclosing run
        if step.containing and not cls.offered() >= CONTAINING:
            continue  # known without the full probe, which may make a cgroup
        probe = cls.probe()
        if not (probe.containing if step.containing else probe.usable):
            continue
        nested = () if enclosing is None else (_nested(enclosing),)
        return Choice(cls, _reason(step, probe, AUTO_ORDER[:index]), nested)
    raise AssertionError("the plain backend is always usable")


def _reason(step: Step, probe: Probe, before: tuple[Step, ...]) -> str:
    """A fallback's reason says why the cgroup backends before it could not be used; their
    probes are made by then (a fallback is only reached past them)."""
    if step.containing:
        return probe.reason
    lacking: list[str] = []
    for earlier in before:
        problem = None if earlier.elsewhere else earlier.backend.probe().problem
        if problem is not None and problem not in lacking:
            lacking.append(problem)
    reason = step.fallback_reason or probe.reason
    return f"{reason} ({'; '.join(lacking)})" if lacking else reason


def _nested(enclosing: str) -> str:
    return f"nested in run {enclosing}, whose ceilings and kill cover it"


def enclosing_run() -> str | None:
    """The run of an enclosing tiered-run this process is in, if any. A nested run then makes
    its cgroups below its own instead of a systemd scope elsewhere, which would take its
    workload out of the enclosing run's tree."""
    try:
        paths = own_cgroups().values()
    except OSError:
        return None
    for path in paths:
        for part in reversed(path.split("/")):
            if part.startswith(PREFIX) and not part.endswith("-self"):
                return part.removeprefix(PREFIX).removesuffix(".scope")
    return None
