"""Calibration: the escalation schedule, readable recommendations, the stop rules on a fake
runner, and real hunts for a workload whose need is known."""

from __future__ import annotations

import sys
import tomllib

import pytest
from conftest import run_cli, this_machine
from contract import (
    ATTEMPT_JSON_KEYS,
    CALIBRATION_JSON_KEYS,
    RECOMMENDATION_JSON_KEYS,
    RUN_JSON_KEYS,
)
from factories import outcome_report

from tiered_run.errors import UsageError
from tiered_run.inputs.config import load_config
from tiered_run.inputs.plan import RunOptions
from tiered_run.inputs.units import parse_duration, parse_size
from tiered_run.model.report import Outcome, RunReport
from tiered_run.model.spec import RunSpec
from tiered_run.policy.calibration import (
    escalate,
    readable_duration,
    readable_size,
    recommend,
    schedule,
)
from tiered_run.policy.exit_codes import EXIT_MEMORY, EXIT_TIMEOUT
from tiered_run.workflows.calibrate import CalibrationOutcome, calibrate

PY = sys.executable
MiB, GiB = 1024**2, 1024**3


def test_escalation_multiplies_and_ends_at_the_maximum():
    assert escalate(64 * MiB, 1 * GiB, 2, MiB) == (64 * MiB, 128 * MiB, 256 * MiB, 512 * MiB, GiB)
    assert escalate(12 * GiB, 20 * GiB, 1.5, MiB) == (12 * GiB, 18 * GiB, 20 * GiB)
    assert escalate(5, 5, 2, 0.5) == (5,)
    assert escalate(1.5, 10, 1.5, 0.5) == (1.5, 2.5, 4.0, 6.0, 9.0, 10)


def test_schedule_options():
    assert schedule("memory", None, None, None, None, 2, GiB) == (None,)
    assert schedule("memory", None, None, None, 300 * MiB, 2, GiB) == (300 * MiB,)
    assert schedule("memory", None, None, (1, 2), None, 2, GiB) == (1, 2)
    assert schedule("memory", 256 * MiB, None, None, None, 2, GiB)[-1] == GiB
    assert schedule("timeout", 2.0, None, None, None, 2, None)[-1] == 20.0  # 10 x start
    assert schedule("timeout", 2.0, None, None, None, 2, 5.0)[-1] == 5.0  # the tier's


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("memory", MiB, None, (MiB,), None, 2, GiB), "--memory-start and --memory-steps"),
        (("memory", None, GiB, None, None, 2, GiB), "--memory-max needs --memory-start"),
        (("memory", None, None, (2, 1), None, 2, GiB), "rising"),
        (("timeout", 5.0, 1.0, None, None, 2, None), "above the maximum"),
        (("timeout", 1.0, 5.0, None, None, 1.0, None), "--factor must be above 1"),
        (("timeout", 0.0, None, None, None, 2, None), "--timeout-start must be above 0"),
    ],
)
def test_schedule_refuses_contradictions(args, needle):
    with pytest.raises(UsageError, match=needle):
        schedule(*args)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (150 * MiB, "150M"),
        (int(187.5 * MiB), "190M"),
        (int(150.3 * MiB), "160M"),
        (GiB, "1G"),
        (int(2.34 * GiB), "2.4G"),
        (int(18.7 * GiB), "19G"),
        (100, "16M"),
    ],
)
def test_sizes_round_up_to_two_significant_digits(value, text):
    assert readable_size(value) == text
    assert parse_size(text) >= value


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "1s"), (1.0, "1s"), (1.01, "2s"), (150.2, "2m31s"), (3600, "1h")]
)
def test_durations_round_up_to_whole_seconds(seconds, text):
    assert readable_duration(seconds) == text
    assert parse_duration(text) >= seconds


def test_recommendation_covers_the_peak_with_headroom_and_parses_as_toml():
    rec = recommend(
        outcome_report(Outcome.EXITED, 0, peak_memory_bytes=150 * MiB, wall_s=7.3), 1.25
    )
    assert (rec.memory, rec.memory_high, rec.timeout) == ("190M", "150M", "10s")
    data = tomllib.loads(rec.toml("aimgr"))
    assert data == {"memory": "190M", "memory_high": "150M", "timeout": "10s"}
    assert "[tiers.aimgr]" in rec.toml("aimgr")
    unknown = recommend(outcome_report(Outcome.EXITED, 0, peak_memory_bytes=None, wall_s=2.0), 1.25)
    assert tomllib.loads(unknown.toml(None)) == {"timeout": "3s"}


def fake_calibrate(outcomes, memory=(None,), timeout=(None,)):
    seen: list[RunSpec] = []

    def runner(spec: RunSpec, _on_event: object) -> RunReport:
        seen.append(spec)
        return outcome_report(*outcomes[len(seen) - 1])

    config = load_config(this_machine(), None)
    result = calibrate(("x",), RunOptions(), config, this_machine(), memory, timeout, runner=runner)
    return result, seen


def test_memory_breaches_escalate_memory_only():
    steps = (64 * MiB, 128 * MiB, 256 * MiB)
    result, seen = fake_calibrate(
        [(Outcome.MEMORY, EXIT_MEMORY), (Outcome.MEMORY, EXIT_MEMORY), (Outcome.EXITED, 0)],
        memory=steps,
        timeout=(5.0, 10.0),
    )
    assert [s.limits.memory for s in seen] == list(steps)
    assert {s.limits.timeout for s in seen} == {5.0}
    assert result.outcome is CalibrationOutcome.CALIBRATED and result.exit_code == 0
    assert result.recommendation is not None and len(result.attempts) == 3


def test_timeouts_escalate_time_only():
    result, seen = fake_calibrate(
        [(Outcome.TIMEOUT, EXIT_TIMEOUT), (Outcome.EXITED, 0)],
        memory=(GiB, 2 * GiB),
        timeout=(1.0, 2.0),
    )
    assert [(s.limits.memory, s.limits.timeout) for s in seen] == [(GiB, 1.0), (GiB, 2.0)]
    assert result.outcome is CalibrationOutcome.CALIBRATED


def test_a_failure_that_is_not_a_ceiling_stops_at_once():
    for outcome, code in [(Outcome.EXITED, 3), (Outcome.SIGNAL, 139), (Outcome.TASKS, 123)]:
        result, seen = fake_calibrate([(outcome, code)], memory=(MiB * 64, GiB))
        assert len(seen) == 1
        assert result.outcome is CalibrationOutcome.FAILED and result.exit_code == code
        assert "not a memory or time ceiling problem" in result.message
        assert result.recommendation is None


def test_running_out_of_steps_is_exhausted_with_the_last_code():
    result, seen = fake_calibrate([(Outcome.MEMORY, EXIT_MEMORY)] * 2, memory=(64 * MiB, 128 * MiB))
    assert len(seen) == 2
    assert result.outcome is CalibrationOutcome.EXHAUSTED and result.exit_code == EXIT_MEMORY
    assert "--memory-max" in result.message


def test_a_tier_soft_ceiling_is_lowered_to_small_attempts(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('default_tier = "t"\n[tiers.t]\nmemory = "4G"\nmemory_high = "3G"\n')
    config = load_config(this_machine(), path)
    seen: list[RunSpec] = []

    def runner(spec: RunSpec, _on_event: object) -> RunReport:
        seen.append(spec)
        return outcome_report(Outcome.EXITED, 0)

    calibrate(("x",), RunOptions(), config, this_machine(), (GiB,), (None,), runner=runner)
    assert seen[0].limits.memory_high == GiB


class Batches:
    """A runner that runs runs together, as the Slurm executor does: `run_many` gets the
    memory ceilings still to try at one timeout, and is closed when no more are needed."""

    def __init__(self, outcomes):
        self.outcomes = {(m, t): o for (m, t), o in outcomes.items()}
        self.batches: list[list[tuple[int, float]]] = []
        self.closed = 0

    def __call__(self, spec, _on_event=None):
        raise AssertionError("a runner with run_many gets every attempt through it")

    def run_many(self, specs):
        batch = [(s.limits.memory, s.limits.timeout) for s in specs]
        self.batches.append(batch)
        try:
            for key in batch:
                yield outcome_report(*self.outcomes[key])
        finally:
            self.closed += 1


def test_memory_ceilings_at_one_timeout_run_together_and_read_in_order():
    """Memory 64M breaches, 128M times out at 5 s (so 256M at 5 s is not needed), then
    the ceilings from 128M run again at 10 s, where 128M passes: the attempts are those
    one-at-a-time would have made."""
    mem = (64 * MiB, 128 * MiB, 256 * MiB)
    runner = Batches(
        {
            (mem[0], 5.0): (Outcome.MEMORY, EXIT_MEMORY),
            (mem[1], 5.0): (Outcome.TIMEOUT, EXIT_TIMEOUT),
            (mem[2], 5.0): (Outcome.EXITED, 0),
            (mem[1], 10.0): (Outcome.EXITED, 0),
            (mem[2], 10.0): (Outcome.EXITED, 0),
        }
    )
    config = load_config(this_machine(), None)
    result = calibrate(
        ("x",), RunOptions(), config, this_machine(), mem, (5.0, 10.0), runner=runner
    )
    assert runner.batches == [[(m, 5.0) for m in mem], [(m, 10.0) for m in mem[1:]]]
    assert runner.closed == 2  # the runs not needed are given up
    assert [(a.memory, a.timeout) for a in result.attempts] == [
        (mem[0], 5.0), (mem[1], 5.0), (mem[1], 10.0),
    ]  # fmt: skip
    assert result.outcome is CalibrationOutcome.CALIBRATED


def test_calibration_json_keys_are_the_published_contract():
    result, _ = fake_calibrate(
        [(Outcome.MEMORY, EXIT_MEMORY), (Outcome.EXITED, 0)], memory=(64 * MiB, 128 * MiB)
    )
    data = result.to_dict()
    assert set(data) == CALIBRATION_JSON_KEYS
    assert [set(attempt) for attempt in data["attempts"]] == [ATTEMPT_JSON_KEYS] * 2
    assert all(set(attempt["report"]) == RUN_JSON_KEYS for attempt in data["attempts"])
    assert set(data["recommendation"]) == RECOMMENDATION_JSON_KEYS


# Real hunts against the kernel.

TOUCH_150M = 'x = b"\\x01" * (150 << 20)'


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_finds_the_memory_a_workload_needs(tmp_path):
    proc = run_cli(
        *("--memory-start", "64M", "--factor", "2", "--memory-max", "1G", "--timeout", "20"),
        *("--", PY, "-c", TOUCH_150M),
        tmp_path=tmp_path,
        command="calibrate",
    )
    data = proc.report
    assert proc.returncode == 0, proc.stderr
    outcomes = [a["outcome"] for a in data["attempts"]]
    assert outcomes[:2] == ["memory", "memory"] and outcomes[-1] == "exited"
    assert [a["memory_bytes"] for a in data["attempts"]] == [64 * MiB, 128 * MiB, 256 * MiB]
    assert data["outcome"] == "calibrated" and data["schema_version"] == 4
    stdout = proc.stdout.decode()
    snippet = tomllib.loads(stdout[stdout.index("# paste into") :])
    assert parse_size(snippet["memory"]) >= parse_size(snippet["memory_high"]) >= 150 * MiB
    assert parse_size(snippet["memory"]) >= data["attempts"][-1]["peak_memory_bytes"]
    assert parse_duration(snippet["timeout"]) >= 1
    assert "memory (122)" in proc.stderr and "calibrated" in proc.stderr


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_stops_on_a_test_failure_after_one_attempt(tmp_path):
    proc = run_cli(
        *("--memory-start", "64M", "--", PY, "-c", "raise SystemExit(3)"),
        tmp_path=tmp_path,
        command="calibrate",
    )
    data = proc.report
    assert proc.returncode == 3
    assert len(data["attempts"]) == 1 and data["outcome"] == "failed"
    assert data["recommendation"] is None
    assert "not a memory or time ceiling problem" in proc.stderr
