"""Ladder files: parsing, every rejection naming file, step and key, the stop/keep-going
logic on a fake runner, and real ladders against the kernel."""

from __future__ import annotations

import signal
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import run_cli, this_machine
from contract import (
    HOST_SAMPLE_JSON_KEYS,
    LADDER_JSON_KEYS,
    MISS_JSON_KEYS,
    RUN_JSON_KEYS,
    SETTLE_JSON_KEYS,
    STEP_JSON_KEYS,
)
from factories import host_state, outcome_report

from tiered_run.errors import UsageError
from tiered_run.inputs.config import load_config
from tiered_run.inputs.ladder_file import load_ladder, parse_ladder, plan_ladder
from tiered_run.model.report import Outcome, RunReport
from tiered_run.model.spec import OnLoad, RunSpec
from tiered_run.policy.exit_codes import EXIT_EXPECTATION, EXIT_MEMORY, EXIT_UNHEALTHY
from tiered_run.policy.settle import Thresholds
from tiered_run.workflows.ladder import LadderOutcome, StepStatus, run_ladder

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
GiB = 1024**3

GOOD = """
name = "nightly"
tier = "user"
[defaults]
timeout = "10s"
memory = "1G"
env = { A = "1", B = "2" }
[settle]
load_max = 4
memory_available_min = "1G"
pressure_max = 30
timeout = "30s"
interval = "0.5s"
[[step]]
name = "argv"
command = ["python3", "-c", "print('a b')"]
[[step]]
name = "split"
command = "python3 -c 'print(1)'  --flag"
memory = "300M"
timeout = 0
env = { B = "3" }
expect = "memory"
cwd = "sub"
[[step]]
name = "shell"
command = "echo a | wc -c"
shell = true
tier = "aimgr"
on_load = "pause"
nice = 5
"""


def write(tmp_path: Path, text: str, name: str = "ladder.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_file_parses_with_defaults_and_overrides(tmp_path):
    (tmp_path / "sub").mkdir()
    ladder = load_ladder(write(tmp_path, GOOD))
    assert ladder.name == "nightly" and ladder.tier == "user" and not ladder.keep_going
    assert ladder.settle == Thresholds(4.0, GiB, 30.0, 30.0, 0.5)
    argv, split, shell = ladder.steps
    assert argv.command == ("python3", "-c", "print('a b')")
    assert split.command == ("python3", "-c", "print(1)", "--flag")
    assert shell.command == ("/bin/sh", "-c", "echo a | wc -c")
    assert argv.options.memory == GiB and split.options.memory == 300 * 1024**2
    assert argv.options.timeout == 10 and split.options.timeout == 0
    assert split.options.env == {"A": "1", "B": "3"}
    assert split.options.cwd == tmp_path / "sub"
    assert split.expect is Outcome.MEMORY and argv.expect is Outcome.EXITED
    assert shell.options.tier == "aimgr" and shell.options.on_load is OnLoad.PAUSE
    assert shell.options.nice == 5


def test_planning_uses_file_tier_step_tier_and_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    config = load_config(
        this_machine(), write(tmp_path, '[tiers.aimgr]\nmemory = "2G"\n', "c.toml")
    )
    specs = plan_ladder(load_ladder(write(tmp_path, GOOD)), config, this_machine(), "plain", 0.5)
    assert [s.tier for s in specs] == ["user", "user", "aimgr"]
    assert all(s.backend == "plain" and s.interval == 0.5 for s in specs)
    assert specs[0].limits.memory == GiB and specs[2].limits.memory == GiB
    assert specs[1].limits.timeout is None  # timeout = 0 means none, overriding the default
    assert specs[1].env["B"] == "3" and specs[0].env["A"] == "1"


def test_the_example_ladder_parses_and_plans():
    ladder = load_ladder(ROOT / "examples/conservative-ladder.toml")
    assert [s.name for s in ladder.steps] == [
        "baseline",
        "memory-100M",
        "subprocesses-5",
        "subprocesses-20",
        "parallel-tests-89",
        "full-suite",
    ]
    specs = plan_ladder(ladder, load_config(this_machine(), None), this_machine())
    assert all(5 <= s.limits.timeout <= 15 for s in specs)


STEP = '[[step]]\nname = "hog"\ncommand = "true"\n'
BAD = {
    "unknown top-level key": ("colour = 1\n" + STEP, ["unknown key 'colour'", "top level"]),
    "unknown step key": (STEP + "memroy = '1G'\n", ['step 1 "hog"', "unknown key 'memroy'"]),
    "missing command": ('[[step]]\nname = "a"\n', ['step 1 "a"', "missing key command"]),
    "bad size": (STEP + "memory = '2X'\n", ['step 1 "hog": memory:', "malformed size"]),
    "bad duration": (STEP + "timeout = '5x'\n", ['step 1 "hog": timeout:', "1.5s"]),
    "bool as size": (STEP + "memory = true\n", ['step 1 "hog": memory:', "expected a value"]),
    "default bad duration": (
        "[defaults]\nkill_after = 'soon'\n" + STEP,
        ["defaults: kill_after:", "malformed duration"],
    ),
    "settle bad size": (
        "[settle]\nmemory_available_min = 'lots'\n" + STEP,
        ["settle: memory_available_min:", "malformed size"],
    ),
    "settle unknown key": ("[settle]\nload = 1\n" + STEP, ["settle:", "unknown key 'load'"]),
    "unknown expect": (STEP + "expect = 'boom'\n", ['step 1 "hog": expect:', "timeout"]),
    "bad quoting": ('[[step]]\nname = "q"\ncommand = "echo \'a"\n', ['step 1 "q": command:']),
    "empty command": ('[[step]]\nname = "e"\ncommand = []\n', ['step 1 "e": command:', "empty"]),
    "shell with a list": (
        STEP.replace('"true"', '["a"]') + "shell = true\n",
        ['step 1 "hog": command:', "shell = true"],
    ),
    "tasks below 1": (STEP + "tasks_max = 0\n", ['step 1 "hog": tasks_max:', "from 1 to"]),
    "tasks above the kernel": (STEP + "tasks_max = 99999999\n", ["tasks_max:", "4194304"]),
    "weight as a path": (STEP + "cpu_weight = '/tmp'\n", ["cpu_weight:", "expected int"]),
    "weight out of range": (STEP + "io_weight = 0\n", ["io_weight:", "from 1 to 10000"]),
    "nan load": (STEP + "load_max = nan\n", ['step 1 "hog": load_max:', "from 0"]),
    "nan pressure": ("[defaults]\npressure_max = nan\n" + STEP, ["pressure_max:", "to 100"]),
    "memory of 2^64": (STEP + "memory = 18446744073709551616\n", ["memory:", "too large"]),
    "memory fraction": (STEP + "memory = 1.5\n", ["memory:", "fraction of a byte"]),
    "memory in bytes": (STEP + "memory = 100\n", ["memory:", "did you mean 100M?"]),
    "huge timeout": (STEP + "timeout = 1e300\n", ["timeout:", "365d"]),
    "huge interval": ("[settle]\ninterval = 1e10\n" + STEP, ["settle: interval:", "at most"]),
    "zero interval": ("[settle]\ninterval = 0\n" + STEP, ["settle: interval:", "above 0"]),
    "nice out of range": (STEP + "nice = 40\n", ['step 1 "hog": nice:', "-20 to 19"]),
    "duplicate name": (STEP + STEP, ['step 2 "hog": name:', "duplicate"]),
    "no steps": ("tier = 'batch'\n", ["no steps", "[[step]]"]),
    "not TOML": ("[[step\n", ["not valid TOML"]),
    "cwd missing": (STEP + "cwd = 'nowhere'\n", ['step 1 "hog": cwd:', "not a directory"]),
    "env not strings": (STEP + "env = { A = 1 }\n", ['step 1 "hog": env:', "table of strings"]),
    "second step": (
        STEP + '[[step]]\nname = "two"\ncommand = "true"\nmemory = "lots"\n',
        ['step 2 "two": memory:'],
    ),
}


EVERY_KEY = """
name = "every key"
tier = "batch"
keep_going = true
[defaults]
{defaults}
[settle]
load_max = 50.0
memory_available_min = "64M"
pressure_max = 90
timeout = "1min"
interval = "500ms"
[[step]]
name = "all"
command = ["true"]
shell = false
expect = "exited"
tier = "batch"
{defaults}
"""
EVERY_VALUE = """
cpus = "{cpus}"
memory = "1G"
memory_high = "512M"
tasks_max = 100
timeout = "5min"
kill_after = "500ms"
signal = "INT"
nice = 5
cpu_weight = 100
cpu_quota = "150%"
io_weight = 200
io_read_max = "100M"
io_write_max = "50M"
io_read_iops_max = 2000
io_write_iops_max = 1000
io_device = "/"
memory_low = "128M"
load_max = 40
pressure_max = 80.5
on_load = "warn"
cwd = "."
env = {{ LANG = "C" }}
private_tmp = false
"""
# A container needs a runtime on the machine: tests/test_container.py runs one.
CONTAINER_KEYS = {"container", "runtime", "network", "mount_cwd"}


def test_every_key_the_format_accepts_works(tmp_path):
    # `cpu_weight = 100` failed ("expected a path string"); every documented key must plan.
    from tiered_run.inputs.ladder_file import DEFAULT_KEYS, SETTLE_KEYS, STEP_KEYS, TOP_KEYS

    cpus = ",".join(str(c) for c in this_machine().cpus[-1:])
    values = EVERY_VALUE.format(cpus=cpus)
    text = EVERY_KEY.format(defaults=values)
    data = __import__("tomllib").loads(text)
    assert set(data) == TOP_KEYS
    # user needs root, a container a runtime: tested apart
    assert set(data["defaults"]) == DEFAULT_KEYS - {"user", *CONTAINER_KEYS}
    assert set(data["settle"]) == SETTLE_KEYS
    assert set(data["step"][0]) == STEP_KEYS - {"user", *CONTAINER_KEYS}
    ladder = load_ladder(write(tmp_path, text))
    (spec,) = plan_ladder(ladder, load_config(this_machine(), None), this_machine())
    assert (spec.limits.cpu_weight, spec.limits.io_weight) == (100, 200)
    assert spec.limits.cpu_quota == 150 and spec.limits.memory_low == 128 * 1024**2
    assert spec.limits.io_max == {
        "rbps": 100 * 1024**2,
        "wbps": 50 * 1024**2,
        "riops": 2000,
        "wiops": 1000,
    }
    assert spec.limits.io_device is not None
    assert spec.limits.timeout == 300 and spec.limits.kill_after == 0.5
    assert spec.limits.pressure_max == 80.5 and spec.limits.nice == 5
    assert spec.limits.stop_signal == signal.SIGINT


@pytest.mark.parametrize(
    "content",
    [b'name = "caf\xe9"\n', b"a = " + b"[" * 500 + b"]" * 500 + b"\n"],
    ids=["not UTF-8", "nested 500 deep"],
)
def test_a_file_that_cannot_be_read_as_toml_is_one_usage_error(tmp_path, content):
    path = tmp_path / "ladder.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="fix the file") as excinfo:
        load_ladder(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_files_name_file_step_and_key(case, tmp_path):
    text, needles = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_ladder(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


PLAN_BAD = {
    "unknown step tier": (STEP + "tier = 'nope'\n", ['step 1 "hog": tier:', "unknown tier 'nope'"]),
    "unknown file tier": ("tier = 'nope'\n" + STEP, [": tier: unknown tier 'nope'"]),
    "protected tier": (STEP + "tier = 'system'\n", ['step 1 "hog"', "protected"]),
    "CPUs not online": (STEP + "cpus = '4000'\n", ['step 1 "hog"', "not online"]),
    "env key with =": (STEP + 'env = { "A=B" = "1" }\n', ['step 1 "hog"', "without ="]),
    "NUL in argv": (
        '[[step]]\nname = "n"\ncommand = ["echo", "a\\u0000b"]\n',
        ['step 1 "n"', "NUL byte"],
    ),
    "soft above hard": (
        STEP + "memory = '1G'\nmemory_high = '2G'\n",
        ['step 1 "hog"', "soft ceiling"],
    ),
}


@pytest.mark.parametrize("case", list(PLAN_BAD), ids=list(PLAN_BAD))
def test_plan_errors_name_file_and_step(case, tmp_path):
    text, needles = PLAN_BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        plan_ladder(load_ladder(path), load_config(this_machine(), None), this_machine())
    message = str(err.value)
    assert message.startswith(str(path)), message
    for needle in needles:
        assert needle in message, message


def test_the_cli_refuses_a_bad_file_before_any_step_runs(tmp_path):
    marker = tmp_path / "ran"
    text = f"""
[[step]]
name = "first"
command = ["{PY}", "-c", "open({str(marker)!r}, 'w')"]
[[step]]
name = "second"
command = "true"
memory = "12 potatoes"
"""
    proc = run_cli(str(write(tmp_path, text)), command="ladder", report=False, text=True)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert 'step 2 "second": memory: malformed size' in proc.stderr
    assert not marker.exists()


# The run logic, on a fake runner and a fake host: no root, no sleeping.


def fake_run(outcomes: list[tuple[Outcome, int]], text: str, keep_going: bool = False, **kw):
    ladder = parse_ladder(__import__("tomllib").loads(text), "fake.toml")
    specs = plan_ladder(ladder, load_config(this_machine(), None), this_machine())
    ran: list[RunSpec] = []

    def runner(spec: RunSpec, _on_event: object) -> RunReport:
        ran.append(spec)
        return outcome_report(*outcomes[len(ran) - 1])

    host = host_state(0.1)
    kw.setdefault("read_host", lambda: host)
    report = run_ladder(ladder, specs, keep_going=keep_going, runner=runner, **kw)
    return report, ran


THREE = "".join(f'[[step]]\nname = "s{i}"\ncommand = "true"\n' for i in (1, 2, 3))


def test_stops_at_the_first_failing_step_with_its_exit_code():
    report, ran = fake_run([(Outcome.EXITED, 0), (Outcome.EXITED, 3)], THREE)
    assert len(ran) == 2
    assert [s.status for s in report.steps] == [
        StepStatus.PASSED,
        StepStatus.FAILED,
        StepStatus.NOT_RUN,
    ]
    assert report.outcome is LadderOutcome.FAILED and report.exit_code == 3
    assert report.steps[2].reason == 'step 2 "s2" failed'
    assert report.to_dict()["steps"][2]["report"] is None


def test_keep_going_runs_every_step_and_keeps_the_first_code():
    outcomes = [(Outcome.TIMEOUT, 124), (Outcome.EXITED, 0), (Outcome.EXITED, 5)]
    report, ran = fake_run(outcomes, THREE, keep_going=True)
    assert len(ran) == 3 and report.exit_code == 124
    assert report.outcome is LadderOutcome.FAILED


def test_expected_breaches_pass_and_an_unexpected_clean_exit_fails_with_119():
    text = THREE.replace('name = "s2"', 'name = "s2"\nexpect = "memory"')
    report, _ = fake_run([(Outcome.EXITED, 0), (Outcome.MEMORY, 122), (Outcome.EXITED, 0)], text)
    assert report.outcome is LadderOutcome.PASSED and report.exit_code == 0
    report, _ = fake_run([(Outcome.EXITED, 0), (Outcome.EXITED, 0)], text)
    # 119, not 1: a step's own code is as often 1 as anything.
    assert report.exit_code == EXIT_EXPECTATION == 119 and "expected memory" in report.message


def test_an_unsettled_host_stops_the_ladder_as_unhealthy():
    states = iter([host_state(0.1)] * 2 + [host_state(9.0)] * 100)
    clock = {"now": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    text = "[settle]\nload_max = 2\ntimeout = '5s'\n" + THREE
    report, ran = fake_run(
        [(Outcome.EXITED, 0)] * 3,
        text,
        keep_going=True,
        read_host=lambda: next(states),
        clock=lambda: clock["now"],
        sleep=sleep,
    )
    assert len(ran) == 1
    assert report.outcome is LadderOutcome.UNHEALTHY and report.exit_code == EXIT_UNHEALTHY
    step2 = report.steps[1]
    assert step2.status is StepStatus.NOT_RUN and step2.settle is not None
    assert "load 9.00 above load_max 2" in step2.reason and "load_max" in report.message
    assert report.steps[2].status is StepStatus.NOT_RUN


def test_a_remote_runner_has_no_gate_here_and_reports_the_node_it_ran_on():
    """Steps run elsewhere (a Slurm executor): this host is never read, and the host
    before and after each step are the ones its report saw."""
    ladder = parse_ladder(
        {"settle": {"load_max": 0.0, "timeout": "1s"}, "step": [{"name": "a", "command": "true"}]},
        "remote.toml",
    )

    class Remote:
        remote = True

        def __call__(self, spec, _on_event):
            return outcome_report(Outcome.EXITED, 0)

    def unread():
        raise AssertionError("this host was read")

    result = run_ladder(ladder, (None,), runner=Remote(), read_host=unread)
    step = result.steps[0]
    assert step.status is StepStatus.PASSED and step.settle is None
    assert (step.host_before.load1, step.host_after.load1) == (0.5, 2.0)  # the report's


def test_ladder_json_keys_are_the_published_contract():
    # A step that ran, one the gate stopped (a settle result naming what was missed) and
    # one not run: every kind of step entry the JSON holds.
    states = iter([host_state(0.1)] * 2 + [host_state(9.0, cpu=50.0)] * 100)
    clock = {"now": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    text = "[settle]\nload_max = 2\npressure_max = 10\ntimeout = '5s'\n" + THREE
    report, _ = fake_run(
        [(Outcome.EXITED, 0)] * 3,
        text,
        read_host=lambda: next(states),
        clock=lambda: clock["now"],
        sleep=sleep,
    )
    data = report.to_dict()
    assert set(data) == LADDER_JSON_KEYS
    ran, stopped, not_run = data["steps"]
    for step in (ran, stopped, not_run):
        assert set(step) == STEP_JSON_KEYS
    assert set(ran["report"]) == RUN_JSON_KEYS
    assert set(ran["host_before"]) == set(ran["host_after"]) == HOST_SAMPLE_JSON_KEYS
    assert set(stopped["settle"]) == SETTLE_JSON_KEYS
    assert [set(miss) for miss in stopped["settle"]["missed"]] == [MISS_JSON_KEYS] * 2
    assert not_run["report"] is None and not_run["settle"] is None


def test_an_interrupted_step_stops_even_with_keep_going():
    outcomes = [(Outcome.INTERRUPTED, 130), (Outcome.EXITED, 0), (Outcome.EXITED, 0)]
    report, ran = fake_run(outcomes, THREE, keep_going=True)
    assert len(ran) == 1 and report.exit_code == 130
    assert report.outcome is LadderOutcome.INTERRUPTED


# Real ladders against the kernel.

HOG = "chunks = [b'x' * (25 << 20) for _ in range(40)]"  # stops by itself at 1 GiB


def real_ladder(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "step3-ran"
    text = f"""
[defaults]
timeout = "10s"
kill_after = "1s"
memory = "512M"
[settle]
memory_available_min = "256M"
timeout = "10s"
[[step]]
name = "fine"
command = ["{PY}", "-c", "print('fine')"]
[[step]]
name = "hog"
memory = "100M"
command = ["{PY}", "-c", "{HOG}"]
[[step]]
name = "after"
command = ["{PY}", "-c", "open({str(marker)!r}, 'w')"]
"""
    return write(tmp_path, text), marker


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_a_memory_breach_stops_the_ladder_with_122(tmp_path):
    path, marker = real_ladder(tmp_path)
    proc = run_cli(
        str(path), "--junit", str(tmp_path / "j.xml"), tmp_path=tmp_path, command="ladder"
    )
    data = proc.report
    assert proc.returncode == EXIT_MEMORY, proc.stderr
    assert not marker.exists()
    assert data["schema_version"] == 4 and data["outcome"] == "failed"
    assert [s["status"] for s in data["steps"]] == ["passed", "failed", "not_run"]
    hog, after = data["steps"][1], data["steps"][2]
    assert hog["report"]["outcome"] == "memory" and hog["report"]["exit_code"] == EXIT_MEMORY
    assert hog["host_before"]["load1"] >= 0 and hog["host_after"]["memory_available_bytes"] > 0
    assert after["report"] is None and after["host_before"] is None
    assert "hog" in proc.stderr and "not run" in proc.stderr
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    assert suite.find("testcase[@name='after']/skipped") is not None


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_keep_going_runs_the_step_after_a_breach(tmp_path):
    path, marker = real_ladder(tmp_path)
    proc = run_cli(str(path), "--keep-going", tmp_path=tmp_path, command="ladder")
    data = proc.report
    assert proc.returncode == EXIT_MEMORY, proc.stderr
    assert marker.exists()
    assert [s["status"] for s in data["steps"]] == ["passed", "failed", "passed"]


def test_the_cli_stops_an_unhealthy_host_with_120_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    text = f"""
[settle]
memory_available_min = "100T"
timeout = "0.5s"
interval = "0.1s"
[[step]]
name = "never"
command = ["{PY}", "-c", "open({str(marker)!r}, 'w')"]
"""
    proc = run_cli(str(write(tmp_path, text)), tmp_path=tmp_path, command="ladder")
    data = proc.report
    assert proc.returncode == EXIT_UNHEALTHY
    assert not marker.exists()
    assert data["outcome"] == "unhealthy"
    step = data["steps"][0]
    assert step["status"] == "not_run" and step["settle"]["settled"] is False
    assert step["settle"]["missed"][0]["key"] == "memory_available_min"
    assert step["host_before"]["memory_available_bytes"] > 0
    assert "memory_available_min" in proc.stderr
