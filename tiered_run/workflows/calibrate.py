"""Find the ceilings a workload needs: run it under escalating memory and time ceilings
until it passes, then recommend ceilings from what it really used, plus headroom.

Only a ceiling breach is worth escalating; a test failure or a crash says nothing about
ceilings, so calibration stops there and says so.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.config import Config
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.inputs.units import format_duration, format_size, plural
from tiered_run.model.report import Event, Outcome, RunReport
from tiered_run.model.spec import RunSpec
from tiered_run.policy.calibration import (
    DEFAULT_HEADROOM,
    Recommendation,
    recommend,
)

CALIBRATION_SCHEMA_VERSION = 4  # 2, 3, 4: run reports of schema 2, 3, 4 inside

Runner = Callable[[RunSpec, Callable[[Event], None] | None], RunReport]


class CalibrationOutcome(enum.Enum):
    CALIBRATED = "calibrated"  # an attempt passed; a recommendation follows
    FAILED = "failed"  # an attempt failed for a reason no higher ceiling fixes
    EXHAUSTED = "exhausted"  # still breaching at the largest ceilings
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Attempt:
    index: int
    memory: int | None
    timeout: float | None
    report: RunReport

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "memory_bytes": self.report.limits.get("memory_bytes"),
            "timeout_s": self.report.limits.get("timeout_s"),
            "outcome": self.report.outcome.value,
            "exit_code": self.report.exit_code,
            "wall_s": self.report.wall_s,
            "peak_memory_bytes": self.report.peak_memory_bytes,
            "report": self.report.to_dict(),
        }


@dataclass(frozen=True)
class CalibrationReport:
    command: tuple[str, ...]
    tier: str | None
    outcome: CalibrationOutcome
    exit_code: int
    message: str
    attempts: tuple[Attempt, ...]
    recommendation: Recommendation | None

    def to_dict(self) -> dict[str, object]:
        rec = self.recommendation
        return {
            "schema_version": CALIBRATION_SCHEMA_VERSION,
            "kind": "calibration",
            "command": list(self.command),
            "tier": self.tier,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "message": self.message,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
            "recommendation": None
            if rec is None
            else {
                "memory": rec.memory,
                "memory_high": rec.memory_high,
                "timeout": rec.timeout,
                "peak_memory_bytes": rec.peak_memory,
                "peak_memory_unreclaimable_bytes": rec.peak_unreclaimable,
                "wall_s": rec.wall_s,
                "headroom": rec.headroom,
                "toml": rec.toml(self.tier),
            },
        }


def calibrate(
    command: tuple[str, ...],
    options: RunOptions,
    config: Config,
    machine: Machine,
    memory_steps: tuple[float | None, ...],
    timeout_steps: tuple[float | None, ...],
    headroom: float = DEFAULT_HEADROOM,
    runner: Runner | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> CalibrationReport:
    """Escalate memory on memory breaches and time on timeouts, one step at a time."""
    if headroom < 1:
        raise UsageError(f"--headroom must be at least 1, e.g. 1.25; got {headroom:g}")
    if runner is None:
        from tiered_run.engine.supervisor import run as runner
    say = on_progress or (lambda _message: None)
    tier = config.tier(options.tier)

    def plan(size: float | None, timeout: float | None) -> RunSpec:
        memory = None if size is None else int(size)
        high = options.memory_high or tier.memory_high
        if memory is not None and high is not None and high > memory:
            high = memory  # a tier's soft ceiling must not sit above a lower attempt
        attempt = replace(options, memory=memory, timeout=timeout, memory_high=high)
        return plan_run(command, attempt, config, machine)

    plan(memory_steps[-1], timeout_steps[-1])  # refuse bad input before the first attempt
    run_many = getattr(runner, "run_many", None)
    attempts: list[Attempt] = []
    m = t = 0
    while True:
        # The memory ceilings still to try at this timeout do not depend on each other: a
        # runner that can run runs together (a Slurm executor) gets them at once, and the
        # results are read in order as if one had followed the other. Elsewhere one runs
        # at a time, as each result decides the next.
        sizes = memory_steps[m:] if run_many is not None else memory_steps[m : m + 1]
        batch = [plan(size, timeout_steps[t]) for size in sizes]
        first = len(attempts) + 1
        for index, spec in enumerate(batch, start=first):
            say(f"attempt {index}: {_ceilings(spec.limits.memory, spec.limits.timeout)}")
        reports = run_many(batch) if run_many is not None else iter([runner(batch[0], on_event)])
        try:
            for spec, report in zip(batch, reports, strict=False):
                limits = spec.limits
                ceilings = _ceilings(limits.memory, limits.timeout)
                attempts.append(Attempt(len(attempts) + 1, limits.memory, limits.timeout, report))
                n = len(attempts)
                say(f"attempt {n}: {report.outcome.value} (exit code {report.exit_code})")
                if report.outcome is Outcome.EXITED and report.exit_code == 0:
                    rec = recommend(report, headroom)
                    message = f"passed at {ceilings} after {plural(n, 'attempt')}"
                    outcome = CalibrationOutcome.CALIBRATED
                    return _done(command, spec, outcome, 0, message, attempts, rec)
                if report.outcome is Outcome.MEMORY and m + 1 < len(memory_steps):
                    m += 1
                    continue  # the next of the batch, or a new batch of one
                if report.outcome is Outcome.TIMEOUT and t + 1 < len(timeout_steps):
                    t += 1
                    break  # the rest of the batch had the shorter timeout
                return _done(command, spec, *_why(report, n), attempts, None)
        finally:
            close = getattr(reports, "close", None)
            if close is not None:
                close()  # runs of the batch not needed any more are cancelled


def _why(report: RunReport, n: int) -> tuple[CalibrationOutcome, int, str]:
    what = f"attempt {n}: {' '.join(report.message.split())}"
    if report.outcome is Outcome.INTERRUPTED:
        return CalibrationOutcome.INTERRUPTED, report.exit_code, f"{what}; stopped"
    if report.outcome in (Outcome.MEMORY, Outcome.TIMEOUT):
        which = "--memory-max" if report.outcome is Outcome.MEMORY else "--timeout-max"
        message = f"{what}, at the largest ceiling; raise {which} or find what it spends it on"
        return CalibrationOutcome.EXHAUSTED, report.exit_code, message
    message = f"{what}; not a memory or time ceiling problem, so no higher ceiling will fix it"
    return CalibrationOutcome.FAILED, report.exit_code, message


def _done(
    command: tuple[str, ...],
    spec: RunSpec,
    outcome: CalibrationOutcome,
    code: int,
    message: str,
    attempts: list[Attempt],
    rec: Recommendation | None,
) -> CalibrationReport:
    return CalibrationReport(command, spec.tier, outcome, code, message, tuple(attempts), rec)


def _ceilings(memory: int | None, timeout: float | None) -> str:
    size = "no memory ceiling" if memory is None else f"memory {format_size(memory)}"
    return f"{size}, " + (
        "no timeout" if timeout is None else f"timeout {format_duration(timeout)}"
    )
