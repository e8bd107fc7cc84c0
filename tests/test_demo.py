"""The built-in demo: the packaged ladder is found and valid, and end to end every step
ends as it declares, on the machine's default backend and without cgroups."""

from __future__ import annotations

import sys

import pytest
from conftest import run_cli

from tiered_run.host.machine import read_machine
from tiered_run.inputs.config import load_config
from tiered_run.inputs.ladder_file import plan_ladder
from tiered_run.model.report import Outcome
from tiered_run.workflows.demo import demo_ladder

EXPECTED = {
    "well-behaved": "exited",
    "memory-hog": "memory",
    "escaping-daemon": "exited",
    "fork-storm": "tasks",
    "sleeper-past-timeout": "timeout",
}


def test_the_packaged_demo_is_valid_and_uses_this_python():
    ladder = demo_ladder()
    assert ladder.keep_going
    assert {s.name: s.expect.value for s in ladder.steps} == EXPECTED
    assert all(s.command[0] == sys.executable for s in ladder.steps)
    machine = read_machine()
    specs = plan_ladder(ladder, load_config(machine, None), machine)
    assert all(spec.limits.timeout and spec.limits.timeout <= 10 for spec in specs)
    assert ladder.steps[1].expect is Outcome.MEMORY


@pytest.mark.root(reason="guarded runs need root for cgroups here")
@pytest.mark.parametrize("backend", ["auto", "plain"])
def test_demo_end_to_end(backend, tmp_path):
    proc = run_cli("--backend", backend, command="demo", text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = proc.report
    assert data["outcome"] == "passed"
    steps = {s["name"]: s for s in data["steps"]}
    assert {name: s["report"]["outcome"] for name, s in steps.items()} == EXPECTED
    assert all(s["status"] == "passed" for s in steps.values())
    assert steps["escaping-daemon"]["report"]["leftover_killed"] >= 1
    assert "ladder demo passed" in proc.stderr
    for name in EXPECTED:
        assert name in proc.stderr
