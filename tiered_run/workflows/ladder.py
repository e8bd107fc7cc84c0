"""Running a ladder: the steps in order, each behind a health gate that waits for the host
to settle, stopping at the first failure so a struggling machine is not pushed further.
"""

from __future__ import annotations

import enum
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiered_run.host import signals
from tiered_run.host.machine import HostReader
from tiered_run.inputs.ladder_file import Ladder, Step
from tiered_run.inputs.plan import RunOptions
from tiered_run.model.host import HostState
from tiered_run.model.report import Event, Outcome, RunReport, signal_name
from tiered_run.model.spec import RunSpec
from tiered_run.policy.exit_codes import EXIT_EXPECTATION, EXIT_UNHEALTHY, signal_exit
from tiered_run.policy.settle import (
    Miss,
    SettleResult,
    Thresholds,
    host_dict,
    host_from_dict,
    wait_until_settled,
)

LADDER_SCHEMA_VERSION = 4  # 3, 4: run reports of schema 3 (before_kill), 4 (I/O) inside
Runner = Callable[[RunSpec, Callable[[Event], None] | None], RunReport]


class StepStatus(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"


class LadderOutcome(enum.Enum):
    PASSED = "passed"  # every step ended as expected
    FAILED = "failed"  # at least one step did not
    UNHEALTHY = "unhealthy"  # the host did not settle before a step; the ladder stopped
    INTERRUPTED = "interrupted"  # tiered-run got Ctrl-C or SIGTERM


@dataclass(frozen=True)
class StepResult:
    step: Step
    status: StepStatus
    report: RunReport | None = None
    settle: SettleResult | None = None
    host_before: HostState | None = None
    host_after: HostState | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        step = self.step
        return {
            "index": step.index,
            "name": step.name,
            "command": list(step.command),
            "expect": step.expect.value,
            "status": self.status.value,
            "reason": self.reason,
            "settle": None if self.settle is None else self.settle.to_dict(),
            "host_before": host_dict(self.host_before),
            "host_after": host_dict(self.host_after),
            "report": None if self.report is None else self.report.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        """A step read back from a ladder report: what it ran and how it ended (the run
        options it was planned with are not in the report, and not needed to show it)."""
        step = Step(
            data["index"], data["name"], tuple(data["command"]), RunOptions(),
            Outcome(data["expect"]),
        )  # fmt: skip
        before = host_from_dict(data["host_before"])
        settle = data["settle"]
        return cls(
            step,
            StepStatus(data["status"]),
            None if data["report"] is None else RunReport.from_dict(data["report"]),
            None if settle is None or before is None else SettleResult.from_dict(settle, before),
            before,
            host_from_dict(data["host_after"]),
            data["reason"],
        )


@dataclass(frozen=True)
class LadderReport:
    name: str
    source: str
    outcome: LadderOutcome
    exit_code: int
    message: str
    wall_s: float
    steps: tuple[StepResult, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "schema_version": LADDER_SCHEMA_VERSION,
            "kind": "ladder",
            "name": self.name,
            "source": self.source,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "message": self.message,
            "wall_s": self.wall_s,  # unrounded, as in a run report: shown again, it reads the same
            "steps": [result.to_dict() for result in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LadderReport:
        """A ladder report read back from its JSON (`to_dict`), to show it again; KeyError,
        TypeError or ValueError when it is not one."""
        return cls(
            data["name"],
            data["source"],
            LadderOutcome(data["outcome"]),
            data["exit_code"],
            data["message"],
            data["wall_s"],
            tuple(StepResult.from_dict(step) for step in data["steps"]),
        )


def step_passed(step: Step, report: RunReport) -> bool:
    """A step passes when it ends as it declares: by default, exited with code 0."""
    if report.outcome is not step.expect:
        return False
    return step.expect is not Outcome.EXITED or report.exit_code == 0


def run_ladder(
    ladder: Ladder,
    specs: tuple[RunSpec, ...],
    *,
    keep_going: bool = False,
    runner: Runner | None = None,
    read_host: Callable[[], HostState] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_settle: Callable[[str], None] | None = None,
) -> LadderReport:
    """Run the steps in order, each behind the gate; stop at the first failure unless
    keep_going. A host that does not settle, or an interruption, always stops the ladder.

    A `runner` that runs steps elsewhere (`remote`, a Slurm executor) has no gate here: the
    host before and after a step are the ones its report saw.

    The exit code is that of the first problem: a failing step's own code (EXIT_EXPECTATION if
    it exited 0 where a breach was expected), EXIT_UNHEALTHY for the gate, 128 + N for a
    signal N to tiered-run (130 for Ctrl-C), which also ends the settle wait at once.

    A settle wait is said once through `on_progress` (with why: what the host misses) and
    at every look through `on_settle` (a live status line).
    """
    if runner is None:
        from tiered_run.engine.supervisor import run as runner
    remote = getattr(runner, "remote", False)
    read = read_host or (_no_host if remote else HostReader().read)
    sleep = sleep or _sleep_unless_signalled
    say = on_progress or (lambda _message: None)
    keep_going = keep_going or ladder.keep_going
    results: list[StepResult] = []
    problems: list[tuple[LadderOutcome, int, str]] = []
    stopped: str | None = None
    start = clock()
    for step, spec in zip(ladder.steps, specs, strict=True):
        if stopped is not None:
            results.append(StepResult(step, StepStatus.NOT_RUN, reason=stopped))
            continue
        try:
            gate = ladder.settle if not remote else None
            waiting = _waiting(step, gate, say, on_settle) if gate else None
            settle = wait_until_settled(gate, read, clock, sleep, waiting) if gate else None
        except _Signalled as stop:
            reason = f"interrupted by {stop.name} while waiting for the host to settle"
            results.append(StepResult(step, StepStatus.NOT_RUN, reason=reason))
            code = signal_exit(stop.signum)
            problems.append((LadderOutcome.INTERRUPTED, code, f"before {step.label}: {reason}"))
            stopped = "the ladder was interrupted"
            continue
        before = settle.state if settle is not None else (None if remote else read())
        if settle is not None and not settle.settled:
            reason = settle.describe()
            results.append(StepResult(step, StepStatus.NOT_RUN, None, settle, before, None, reason))
            problems.append((LadderOutcome.UNHEALTHY, EXIT_UNHEALTHY, f"{step.label}: {reason}"))
            stopped = f"the host did not settle before {step.label}"
            continue
        if settle is not None and settle.waited_s >= 0.5:
            say(f"{step.label}: {settle.describe()}")
        say(f"{step.label} ({step.index}/{len(specs)}): {_short(step.command)}")
        report = runner(spec, on_event)
        passed, reason = step_passed(step, report), _verdict(step, report)
        status = StepStatus.PASSED if passed else StepStatus.FAILED
        after = None if remote else read()
        if remote and report.host is not None:
            before, after = _hosts_seen(report)
        results.append(StepResult(step, status, report, settle, before, after, reason))
        say(f"{step.label}: {status.value} - {reason}")
        if report.outcome is Outcome.INTERRUPTED:
            problems.append(
                (LadderOutcome.INTERRUPTED, report.exit_code, f"{step.label}: {reason}")
            )
            stopped = "the ladder was interrupted"
        elif not passed:
            code = report.exit_code or EXIT_EXPECTATION
            problems.append((LadderOutcome.FAILED, code, f"{step.label} failed: {reason}"))
            stopped = None if keep_going else f"{step.label} failed"
    return _summary(ladder, results, problems, stopped is not None, clock() - start)


def _waiting(
    step: Step, gate: Thresholds, say: Callable[[str], None], live: Callable[[str], None] | None
) -> Callable[[float, list[Miss]], None]:
    """What a settle wait tells: why it waits, once as progress and at every look live."""
    said = False

    def tell(waited: float, misses: list[Miss]) -> None:
        nonlocal said
        why = "; ".join(miss.describe() for miss in misses)
        if not said:
            said = True
            say(f"{step.label}: waiting up to {gate.timeout:g} s for the host to settle: {why}")
        if live is not None:
            live(f"{step.label}: settle wait {waited:.0f} s of {gate.timeout:g} s: {why}")

    return tell


def _no_host() -> HostState:
    raise AssertionError("a remote runner's steps are not read on this host")


def _hosts_seen(report: RunReport) -> tuple[HostState, HostState]:
    """The host a remote step ran on, before and after, as its report saw it."""
    host = report.host
    assert host is not None
    low = host.memory_available_min_bytes
    return HostState(host.load1_start, low, {}), HostState(host.load1_end, low, {})


class _Signalled(Exception):
    """tiered-run got an ending signal while the ladder waited for the host."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal_name(signum)


def _sleep_unless_signalled(seconds: float) -> None:
    if signals.wait(seconds):
        first = signals.first()
        raise _Signalled(first.signum if first else 2)


def _short(command: tuple[str, ...], width: int = 60) -> str:
    text = " ".join(shlex.join(command).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _verdict(step: Step, report: RunReport) -> str:
    """How the step ended, said once (the report's message names its outcome)."""
    ended = " ".join(report.message.split())
    if step.expect is Outcome.EXITED:
        return ended
    if step_passed(step, report):
        return f"{ended}, as expected"
    return f"{ended}; expected {step.expect.value}"


def _summary(
    ladder: Ladder,
    results: list[StepResult],
    problems: list[tuple[LadderOutcome, int, str]],
    stopped: bool,
    wall: float,
) -> LadderReport:
    """Outcome: what stopped the ladder, else failed if any step failed; code: the first's."""
    passed = sum(r.status is StepStatus.PASSED for r in results)
    not_run = sum(r.status is StepStatus.NOT_RUN for r in results)
    counts = f"{passed} of {len(results)} steps passed"
    counts += f", {not_run} not run" if not_run else ""
    if not problems:
        return LadderReport(
            ladder.name, ladder.source, LadderOutcome.PASSED, 0, counts, wall, tuple(results)
        )
    outcome = problems[-1][0] if stopped else LadderOutcome.FAILED
    message = f"{problems[0][2]}; {counts}"
    return LadderReport(
        ladder.name, ladder.source, outcome, problems[0][1], message, wall, tuple(results)
    )
