"""Synthetic records for tests that need a report or a host state but no run: one builder
each, with plausible defaults that a test overrides where it matters."""

from __future__ import annotations

from tiered_run.host.machine import HostState
from tiered_run.model.report import HostSummary, Outcome, RunReport
from tiered_run.policy.exit_codes import EXIT_TIMEOUT

MiB = 1024**2
GiB = 1024**3


def make_report(**overrides: object) -> RunReport:
    """A run of `make -j4 test` that exited 0 within its ceilings, as a kernel backend
    reports it; any field can be overridden."""
    values: dict[str, object] = {
        "run_id": "run-1",
        "command": ("make", "-j4", "test"),
        "tier": "build",
        "backend": "cgroupfs",
        "backend_reason": "cgroup v2 delegated to this user",
        "outcome": Outcome.EXITED,
        "exit_code": 0,
        "returncode": 0,
        "signal": None,
        "message": "exited with code 0",
        "started_at": "2024-05-01T12:00:00+00:00",
        "wall_s": 8.02,
        "cpu_s": 15.9,
        "peak_memory_bytes": 412 * MiB,
        "peak_memory_source": "kernel",
        "peak_tasks": 17,
        "cpus": (4, 5, 6, 7),
        "cpus_seen": (4, 5),
        "leftover_killed": 0,
        "limits": {"timeout_s": 8.0, "memory_bytes": 2 * GiB, "tasks_max": 512},
        "enforced_by_kernel": ("memory", "tasks"),
        "memory_high_exceeded": False,
        "host": HostSummary(
            load1_start=0.5,
            load1_peak=3.1,
            load1_end=2.0,
            pressure_peak_pct=None,
            memory_available_min_bytes=8 * GiB,
        ),
        "log": None,
        "events": (),
        "ended_at": "2024-05-01T12:00:08+00:00",
        "hostname": "build-7",
        "tiered_run_version": "0.1.0",
    }
    values.update(overrides)
    return RunReport(**values)  # type: ignore[arg-type]


def outcome_report(outcome: Outcome, code: int, **overrides: object) -> RunReport:
    """A report that ended with `outcome` and exit code `code` (the workload's own return
    code where it exited by itself), for runners faked in ladder and calibration tests."""
    values: dict[str, object] = {
        "outcome": outcome,
        "exit_code": code,
        "returncode": code if outcome is Outcome.EXITED else None,
        "signal": None,
        "message": f"{outcome.value} {code}",
    }
    values.update(overrides)
    return make_report(**values)


def timeout_report(**overrides: object) -> RunReport:
    """A run SIGKILLed at its 8 s timeout."""
    values: dict[str, object] = {
        "outcome": Outcome.TIMEOUT,
        "exit_code": EXIT_TIMEOUT,
        "returncode": None,
        "signal": 9,
        "message": "timeout: still running at its 8 s timeout",
    }
    values.update(overrides)
    return make_report(**values)


def host_state(load1: float = 0.5, memory_available: int = 8 * GiB, **pressure: float) -> HostState:
    """One sample of the host: load, available memory, PSI `some avg10` by resource."""
    return HostState(load1=load1, memory_available=memory_available, pressure=pressure)
