"""The backends, and the one place that picks which to use and says why."""

from __future__ import annotations

from tiered_run.backends.base import Backend
from tiered_run.backends.cgroup1 import Cgroup1Backend
from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.cgroupfs import PREFIX, own_cgroups
from tiered_run.backends.plain import PlainBackend
from tiered_run.backends.systemd import SystemdBackend
from tiered_run.errors import UsageError

BACKENDS: dict[str, type[Backend]] = {
    "systemd": SystemdBackend,
    "cgroup2": Cgroup2Backend,
    "cgroup1": Cgroup1Backend,
    "plain": PlainBackend,
}
CHOICES = ("auto", *BACKENDS)


def select_backend(requested: str = "auto", tier: str | None = None) -> tuple[Backend, str]:
    """The backend to use and the reason, for the report and `doctor`."""
    if requested != "auto":
        cls = BACKENDS[requested]
        problem = cls.unusable_reason()
        if problem is not None:
            raise UsageError(
                f"--backend {requested} cannot work here: {problem}; try --backend auto"
            )
        return _make(cls, tier), "chosen with --backend"
    enclosing = enclosing_run()
    if enclosing is None and SystemdBackend.unusable_reason() is None:
        backend = SystemdBackend(tier)
        return backend, f"systemd is PID 1: transient scope in {backend.slice}"
    if enclosing is not None:
        backend, reason = _below_own_cgroup()
        return backend, f"{reason}; nested in run {enclosing}, whose ceilings and kill cover it"
    return _below_own_cgroup()


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


def _below_own_cgroup() -> tuple[Backend, str]:
    # Controllers first: on a hybrid machine this spares every start the cgroup2 probe.
    v2_missing = Cgroup2Backend.missing_controllers()
    if not v2_missing and Cgroup2Backend.unusable_reason() is None:
        return Cgroup2Backend(), "cgroup v2 with cpuset, memory and pids controllers"
    v1_problem = Cgroup1Backend.unusable_reason()
    if v1_problem is None:
        backend = Cgroup1Backend()
        hybrid = " (hybrid: cgroup2 mount used for kill and freeze)" if backend.hybrid else ""
        return backend, f"cgroup v1 controllers{hybrid}"
    v2_problem = Cgroup2Backend.unusable_reason()
    if v2_problem is None:
        return Cgroup2Backend(), (
            f"cgroup v2 without {', '.join(v2_missing)} controllers ({v1_problem}); "
            "those ceilings are enforced by the monitor"
        )
    return PlainBackend(), f"no usable cgroup ({v2_problem}; {v1_problem})"


def _make(cls: type[Backend], tier: str | None) -> Backend:
    return SystemdBackend(tier) if cls is SystemdBackend else cls()
